//! Writing an export: the `person` table and the data set's event table, each as Arrow IPC and
//! as Parquet (zstd), streamed in record batches so memory stays flat as events grow, with the
//! two encoders of every table on threads of their own beside the batch builder; each encoder
//! hashes its file as it writes it, so no file is read back for the manifest. Files are written
//! into a staging directory that becomes the export directory only once everything, manifest
//! included, is on disk: a failed export leaves nothing behind.

use crate::anonymize::{
    anonymize_persons, sensitive_value, AnonymizedPersons, EventView, PseudonymKey,
};
use crate::error::ExportError;
use crate::manifest::{DigestWriter, ExportContext, FileDigest, Manifest, MANIFEST_FILE};
use crate::policy::{Dataset, ExportPolicy, PseudonymScope};
use crate::source::{ClinicalEvent, EventKind, Person};
use arrow_array::builder::{ArrayBuilder, Float64Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use rand::RngCore;
use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;

/// Rows per record batch.
const BATCH_ROWS: usize = 65_536;
/// Rows per Parquet row group at most: parquet's default, large enough that one dictionary of
/// person ids serves a million events instead of being written again every batch.
const ROW_GROUP_ROWS: usize = 1 << 20;
/// The largest dictionary page per column chunk (parquet's default is 1 MiB): room for about
/// 110,000 distinct person ids before the column falls back to plain encoding, which costs zstd
/// far more work for 32 hex digits a row.
const DICTIONARY_PAGE_BYTES: usize = 4 << 20;
/// Batches in flight between the row builder and each encoder.
const QUEUE_DEPTH: usize = 2;

impl Dataset {
    /// The event kind and OMOP-like table name of the data set, if it has events.
    fn events(self) -> Option<(EventKind, &'static str)> {
        match self {
            Dataset::Patients => None,
            Dataset::Observations => Some((EventKind::Measurement, "measurement")),
            Dataset::Conditions => Some((EventKind::Condition, "condition_occurrence")),
            Dataset::Medications => Some((EventKind::Medication, "drug_exposure")),
        }
    }
}

fn person_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("person_id", DataType::Utf8, false),
        Field::new("birth", DataType::Utf8, false),
        Field::new("sex", DataType::Utf8, true),
        Field::new("zip3", DataType::Utf8, true),
    ]))
}

fn event_schema(policy: &ExportPolicy) -> SchemaRef {
    let mut fields = vec![Field::new("person_id", DataType::Utf8, false)];
    for column in policy.event_columns() {
        let data_type = if column == "value" {
            DataType::Float64
        } else {
            DataType::Utf8
        };
        fields.push(Field::new(
            column,
            data_type,
            column != "code_system" && column != "code",
        ));
    }
    Arc::new(Schema::new(fields))
}

fn person_batch(
    schema: &SchemaRef,
    rows: &[crate::anonymize::PersonRow],
) -> Result<RecordBatch, ExportError> {
    let mut person_id = StringBuilder::new();
    let mut birth = StringBuilder::new();
    let mut sex = StringBuilder::new();
    let mut zip3 = StringBuilder::new();
    for row in rows {
        person_id.append_value(&row.person_id);
        birth.append_value(&row.birth);
        sex.append_option(row.sex.as_deref());
        zip3.append_option(row.zip3.as_deref());
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(person_id.finish()),
        Arc::new(birth.finish()),
        Arc::new(sex.finish()),
        Arc::new(zip3.finish()),
    ];
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// One event column's builder.
enum EventColumn {
    CodeSystem(StringBuilder),
    Code(StringBuilder),
    Value(Float64Builder),
    Unit(StringBuilder),
    EventDate(StringBuilder),
}

/// The column builders of one batch of events, filled one anonymized event at a time.
struct EventBuilders {
    person_id: StringBuilder,
    columns: Vec<EventColumn>,
}

impl EventBuilders {
    /// Builders for the policy's event columns, sized for `rows` events.
    fn new(policy: &ExportPolicy, rows: usize) -> Self {
        let text = |bytes_per_row: usize| StringBuilder::with_capacity(rows, rows * bytes_per_row);
        EventBuilders {
            person_id: text(32),
            columns: policy
                .event_columns()
                .into_iter()
                .map(|column| match column {
                    "code_system" => EventColumn::CodeSystem(text(8)),
                    "code" => EventColumn::Code(text(8)),
                    "value" => EventColumn::Value(Float64Builder::with_capacity(rows)),
                    "unit" => EventColumn::Unit(text(8)),
                    _ => EventColumn::EventDate(text(10)),
                })
                .collect(),
        }
    }

    fn len(&self) -> usize {
        self.person_id.len()
    }

    fn append(&mut self, event: &EventView) {
        self.person_id.append_value(event.person_id);
        for column in &mut self.columns {
            match column {
                EventColumn::CodeSystem(strings) => strings.append_value(event.code_system),
                EventColumn::Code(strings) => strings.append_value(event.code),
                EventColumn::Value(values) => values.append_option(event.value),
                EventColumn::Unit(strings) => strings.append_option(event.unit),
                EventColumn::EventDate(strings) => strings.append_value(event.event_date.as_str()),
            }
        }
    }

    fn finish(mut self, schema: &SchemaRef) -> Result<RecordBatch, ExportError> {
        let mut columns: Vec<ArrayRef> = vec![Arc::new(self.person_id.finish())];
        for column in &mut self.columns {
            columns.push(match column {
                EventColumn::Value(values) => Arc::new(values.finish()),
                EventColumn::CodeSystem(strings)
                | EventColumn::Code(strings)
                | EventColumn::Unit(strings)
                | EventColumn::EventDate(strings) => Arc::new(strings.finish()),
            });
        }
        Ok(RecordBatch::try_new(schema.clone(), columns)?)
    }
}

/// A table as written: its rows, and the size and SHA3-256 of its `.arrow` and `.parquet` files.
struct WrittenTable {
    rows: u64,
    ipc: (u64, String),
    parquet: (u64, String),
}

/// What an encoder wrote: rows, and the file's size and SHA3-256.
type Encoded = (u64, (u64, String));

/// Encodes the batches of one table to `<name>.arrow` and `<name>.parquet` on two threads of
/// their own while `produce` builds the batches; each encoder hashes its file as it writes it.
fn write_table(
    dir: &Path,
    name: &str,
    schema: SchemaRef,
    produce: impl FnOnce(&dyn Fn(RecordBatch) -> bool) -> Result<(), ExportError>,
) -> Result<WrittenTable, ExportError> {
    let (to_ipc, ipc_batches) = sync_channel::<RecordBatch>(QUEUE_DEPTH);
    let (to_parquet, parquet_batches) = sync_channel::<RecordBatch>(QUEUE_DEPTH);
    let ipc_path = dir.join(format!("{name}.arrow"));
    let parquet_path = dir.join(format!("{name}.parquet"));
    let (ipc_schema, parquet_schema) = (schema.clone(), schema);
    // Plain threads, not rayon tasks: the stages block on each other's channels, and a
    // blocked rayon worker could leave an encoder with no thread to run on.
    let (produced, ipc, parquet) = std::thread::scope(|scope| {
        let ipc = scope.spawn(move || encode_ipc(&ipc_path, &ipc_schema, ipc_batches));
        let parquet =
            scope.spawn(move || encode_parquet(&parquet_path, &parquet_schema, parquet_batches));
        let send = |batch: RecordBatch| {
            to_ipc.send(batch.clone()).is_ok() && to_parquet.send(batch).is_ok()
        };
        let produced = produce(&send);
        drop((to_ipc, to_parquet));
        (produced, join_encoder(ipc), join_encoder(parquet))
    });
    produced?;
    let (ipc_rows, ipc) = ipc?;
    let (parquet_rows, parquet) = parquet?;
    if ipc_rows != parquet_rows {
        return Err(ExportError::Io(std::io::Error::other(format!(
            "{name}: the two encoders wrote different row counts"
        ))));
    }
    Ok(WrittenTable {
        rows: ipc_rows,
        ipc,
        parquet,
    })
}

fn join_encoder(
    handle: std::thread::ScopedJoinHandle<'_, Result<Encoded, ExportError>>,
) -> Result<Encoded, ExportError> {
    handle.join().unwrap_or_else(|_| {
        Err(ExportError::Io(std::io::Error::other(
            "an encoder thread panicked",
        )))
    })
}

fn encode_ipc(
    path: &Path,
    schema: &SchemaRef,
    batches: Receiver<RecordBatch>,
) -> Result<Encoded, ExportError> {
    let file = BufWriter::with_capacity(1 << 20, DigestWriter::new(File::create(path)?));
    let mut writer = arrow_ipc::writer::FileWriter::try_new(file, schema)?;
    let mut rows = 0u64;
    for batch in batches {
        rows += batch.num_rows() as u64;
        writer.write(&batch)?;
    }
    let file = writer.into_inner()?;
    let digest = file
        .into_inner()
        .map_err(|error| error.into_error())?
        .finish()?;
    Ok((rows, digest))
}

fn encode_parquet(
    path: &Path,
    schema: &SchemaRef,
    batches: Receiver<RecordBatch>,
) -> Result<Encoded, ExportError> {
    let properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_dictionary_page_size_limit(DICTIONARY_PAGE_BYTES)
        .build();
    let file = DigestWriter::new(File::create(path)?);
    let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(properties))?;
    let mut rows = 0u64;
    for batch in batches {
        rows += batch.num_rows() as u64;
        writer.write(&batch)?;
    }
    let digest = writer.into_inner()?.finish()?;
    Ok((rows, digest))
}

/// Makes one export into `out_dir` (which must not exist yet) and returns its manifest.
///
/// `events` is called twice when l-diversity is required (once to collect sensitive values per
/// person, once to write), so it must yield the same events each time; otherwise once. Only the
/// events of the policy's data set are used. The events are fallible because they are usually
/// read from a database as the export goes: the first `Err` stops the export, which returns it.
/// Nothing is left in `out_dir` if anything fails.
pub fn export<I>(
    policy: &ExportPolicy,
    context: &ExportContext,
    persons: &[Person],
    events: impl Fn() -> I + Sync,
    out_dir: &Path,
) -> Result<Manifest, ExportError>
where
    I: Iterator<Item = Result<ClinicalEvent, ExportError>>,
{
    policy.validate()?;
    if out_dir.exists() {
        return Err(ExportError::Io(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!("{} already exists", out_dir.display()),
        )));
    }
    let key = match &policy.pseudonym_scope {
        PseudonymScope::PerExport => PseudonymKey::per_export(),
        PseudonymScope::PerRecipient { recipient } => {
            PseudonymKey::for_recipient(&context.pseudonym_secret, recipient)
        }
    };
    let event_table = policy.dataset.events();
    let sensitive = match (&policy.sensitive, policy.l, event_table) {
        (Some(column), Some(l), Some((kind, _))) => collect_sensitive(column, l, kind, events())?,
        _ => HashMap::new(),
    };
    let anonymized = anonymize_persons(
        policy,
        persons,
        &sensitive,
        &key,
        context.as_of.date_naive(),
    )?;

    let staging = staging_dir(out_dir)?;
    let written =
        write_files(policy, &anonymized, &events, &staging).and_then(|(events_in, files)| {
            let mut manifest = Manifest {
                format: "medvault-export/v1".into(),
                export_id: random_hex(16),
                created_at: context.as_of,
                organization: context.organization.clone(),
                policy: policy.clone(),
                persons_in: anonymized.persons_in as u64,
                persons_out: anonymized.rows.len() as u64,
                persons_suppressed: anonymized.suppressed as u64,
                events_in,
                events_out: files
                    .iter()
                    .find(|f| f.name.ends_with(".parquet") && !f.name.starts_with("person"))
                    .map_or(0, |f| f.rows),
                k_achieved: anonymized.k_achieved as u64,
                l_achieved: anonymized.l_achieved.map(|l| l as u64),
                files,
                consent_root: context.consent_root.clone(),
                chain_height: context.chain_height,
                signer_public_key: String::new(),
                signature: String::new(),
            };
            manifest.sign(&context.signing_key)?;
            let text = serde_json::to_vec_pretty(&manifest)
                .map_err(|error| ExportError::Tampered(error.to_string()))?;
            std::fs::write(staging.join(MANIFEST_FILE), text)?;
            std::fs::rename(&staging, out_dir)?;
            Ok(manifest)
        });
    if written.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    written
}

/// Each person's distinct sensitive values, at most `l` of them: enough to decide whether a class
/// reaches l, in memory bounded by persons times l. Stops at the source's first error.
fn collect_sensitive(
    column: &str,
    l: usize,
    kind: EventKind,
    events: impl Iterator<Item = Result<ClinicalEvent, ExportError>>,
) -> Result<HashMap<[u8; 16], BTreeSet<String>>, ExportError> {
    let mut values: HashMap<[u8; 16], BTreeSet<String>> = HashMap::new();
    for event in events {
        let event = event?;
        if event.kind != kind {
            continue;
        }
        let set = values.entry(event.patient_id).or_default();
        if set.len() < l {
            if let Some(value) = sensitive_value(column, &event) {
                set.insert(value);
            }
        }
    }
    Ok(values)
}

fn staging_dir(out_dir: &Path) -> Result<PathBuf, ExportError> {
    let name = out_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "export".into());
    let parent = out_dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let staging = parent.join(format!(".{name}.partial-{}", random_hex(8)));
    std::fs::create_dir(&staging)?;
    Ok(staging)
}

fn random_hex(bytes: usize) -> String {
    let mut random = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut random);
    hex::encode(random)
}

/// Writes every table into `dir`; returns the events seen of the data set and the file digests.
fn write_files<I>(
    policy: &ExportPolicy,
    persons: &AnonymizedPersons,
    events: &(impl Fn() -> I + Sync),
    dir: &Path,
) -> Result<(u64, Vec<FileDigest>), ExportError>
where
    I: Iterator<Item = Result<ClinicalEvent, ExportError>>,
{
    let mut tables = vec![(
        "person",
        write_table(dir, "person", person_schema(), |send| {
            let schema = person_schema();
            for chunk in persons.rows.chunks(BATCH_ROWS) {
                if !send(person_batch(&schema, chunk)?) {
                    break;
                }
            }
            Ok(())
        })?,
    )];
    let mut events_in = 0u64;
    if let Some((kind, table)) = policy.dataset.events() {
        let schema = event_schema(policy);
        let written = write_table(dir, table, schema.clone(), |send| {
            let mut pending = EventBuilders::new(policy, BATCH_ROWS);
            for event in events() {
                let event = event?;
                if event.kind != kind {
                    continue;
                }
                events_in += 1;
                if let Some(view) = EventView::new(policy, persons, &event) {
                    pending.append(&view);
                }
                if pending.len() == BATCH_ROWS {
                    let full =
                        std::mem::replace(&mut pending, EventBuilders::new(policy, BATCH_ROWS));
                    if !send(full.finish(&schema)?) {
                        return Ok(());
                    }
                }
            }
            if pending.len() > 0 {
                send(pending.finish(&schema)?);
            }
            Ok(())
        })?;
        tables.push((table, written));
    }
    let mut files = Vec::new();
    for (table, written) in tables {
        for (extension, (bytes, sha3_256)) in [("arrow", written.ipc), ("parquet", written.parquet)]
        {
            files.push(FileDigest {
                name: format!("{table}.{extension}"),
                rows: written.rows,
                bytes,
                sha3_256,
            });
        }
    }
    Ok((events_in, files))
}
