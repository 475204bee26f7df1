//! The bridge from a research snapshot, read asynchronously, to the exporter, which pulls
//! events from an iterator on a blocking thread.

use crate::error::Causes;
use crate::ResearchSnapshot;
use medvault_exporter::{ClinicalEvent, ExportError};

/// Consenting patients whose records are read and decrypted per database round trip.
const PATIENTS_PER_CHUNK: usize = 256;

/// The snapshot's events, read [`PATIENTS_PER_CHUNK`] patients at a time from the blocking
/// thread the export runs on; `chunk_done` hears how many patients each chunk covered. The
/// first failure ends the stream as an error, which fails the export.
pub(super) fn stream_events<'a>(
    runtime: &'a tokio::runtime::Handle,
    snapshot: &'a ResearchSnapshot,
    chunk_done: impl Fn(usize) + 'a,
) -> impl Iterator<Item = Result<ClinicalEvent, ExportError>> + 'a {
    let cohort = snapshot.cohort_size();
    (0..cohort)
        .step_by(PATIENTS_PER_CHUNK)
        .map(move |start| {
            let end = (start + PATIENTS_PER_CHUNK).min(cohort);
            let events = runtime
                .block_on(snapshot.events(start..end))
                .map_err(|error| {
                    if error.is_internal() {
                        tracing::error!(error = %Causes(&error), "reading the data to export failed");
                    }
                    ExportError::Source(error.caller_message())
                })?;
            chunk_done(end - start);
            Ok(events)
        })
        .flat_map(|chunk: Result<Vec<_>, ExportError>| match chunk {
            Ok(events) => EitherEvents::Events(events.into_iter()),
            Err(error) => EitherEvents::Failed(Some(error)),
        })
}

/// One chunk's events, or the error that ends the stream.
enum EitherEvents {
    Events(std::vec::IntoIter<ClinicalEvent>),
    Failed(Option<ExportError>),
}

impl Iterator for EitherEvents {
    type Item = Result<ClinicalEvent, ExportError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            EitherEvents::Events(events) => events.next().map(Ok),
            EitherEvents::Failed(error) => error.take().map(Err),
        }
    }
}
