//! The chain file's framing, format 2: bytes in and out, no I/O and no record types, so that
//! [`storage`](crate::storage) writes and reads it the same way and every damage is named with
//! its byte offset.
//!
//! ```text
//! file    = header record*
//! header  = "mvchain\0" (8 bytes) | format version (u32, big-endian) = 2
//! record  = body length (u32 BE) | CRC-32 of those 4 bytes (u32 BE) | body | CRC-32 of body (u32 BE)
//! ```
//!
//! The length carries a CRC of its own so that a damaged length (which would otherwise make the
//! reader skip or swallow records) is told apart from the one benign defect: a final record cut
//! short because the process died while appending it. CRC-32 detects every single-bit error (and
//! every burst up to 32 bits) in the field it guards. A file without the header, such as one
//! written in format 1 (bare length prefixes, no checksums), is refused rather than guessed at.

/// First bytes of every chain file.
pub const MAGIC: [u8; 8] = *b"mvchain\0";
/// The format this crate writes and reads.
pub const FORMAT_VERSION: u32 = 2;
/// Length of the file header: magic and version.
pub const HEADER_LEN: u64 = 12;
/// Bytes a record adds around its body: length, length CRC, body CRC.
const RECORD_OVERHEAD: usize = 12;

/// What is wrong with a chain file's bytes at some offset.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameFault {
    /// The file is shorter than its header.
    #[error("the file ends inside its {HEADER_LEN}-byte header")]
    TruncatedHeader,
    /// The file does not start with [`MAGIC`]: another file, or format 1 (no checksums).
    #[error(
        "no chain file header: not a chain file, or one written in format 1, which is not read"
    )]
    NotAChainFile,
    /// A format this build does not read.
    #[error("chain file format {found}, this build reads format {FORMAT_VERSION}")]
    UnsupportedVersion {
        /// The version in the header.
        found: u32,
    },
    /// A record's length does not match its CRC.
    #[error("the record's length field is damaged (its CRC does not match)")]
    DamagedLength,
    /// A record's body does not match its CRC.
    #[error("the record's checksum does not match its contents")]
    ChecksumMismatch,
}

/// A [`FrameFault`] and the offset of the record (or header) it is in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameError {
    /// Byte offset of the damaged record or header.
    pub offset: u64,
    /// What is wrong.
    pub fault: FrameFault,
}

/// One item of a chain file, in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item<'a> {
    /// A complete record whose length and body match their CRCs.
    Record {
        /// Offset of the record's first byte.
        offset: u64,
        /// Offset just past the record.
        end: u64,
        /// The body.
        body: &'a [u8],
    },
    /// The file ends inside a record whose length (when present) is intact: the mark of an
    /// append interrupted by a crash. Always the last item.
    Incomplete {
        /// Offset of the incomplete record.
        offset: u64,
    },
}

/// The header every chain file starts with.
pub fn header() -> [u8; HEADER_LEN as usize] {
    let mut header = [0; HEADER_LEN as usize];
    header[..8].copy_from_slice(&MAGIC);
    header[8..].copy_from_slice(&FORMAT_VERSION.to_be_bytes());
    header
}

/// A record body too long for its 4-byte length.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a record of {0} bytes exceeds the chain file's 4 GiB record limit")]
pub struct RecordTooLarge(pub usize);

/// Appends `body` to `out` as one record.
pub fn frame(body: &[u8], out: &mut Vec<u8>) -> Result<(), RecordTooLarge> {
    let length = u32::try_from(body.len())
        .map_err(|_| RecordTooLarge(body.len()))?
        .to_be_bytes();
    out.reserve(body.len() + RECORD_OVERHEAD);
    out.extend_from_slice(&length);
    out.extend_from_slice(&crc32fast::hash(&length).to_be_bytes());
    out.extend_from_slice(body);
    out.extend_from_slice(&crc32fast::hash(body).to_be_bytes());
    Ok(())
}

/// Checks the header of `bytes` and returns the items after it.
pub fn items(bytes: &[u8]) -> Result<Items<'_>, FrameError> {
    let at_start = |fault| FrameError { offset: 0, fault };
    let Some(header) = bytes.get(..HEADER_LEN as usize) else {
        return Err(at_start(FrameFault::TruncatedHeader));
    };
    let (magic, version) = header.split_at(MAGIC.len());
    if magic != MAGIC {
        return Err(at_start(FrameFault::NotAChainFile));
    }
    let found = u32::from_be_bytes(be_u32(version));
    if found != FORMAT_VERSION {
        return Err(at_start(FrameFault::UnsupportedVersion { found }));
    }
    Ok(Items {
        bytes,
        offset: HEADER_LEN as usize,
        done: false,
    })
}

/// The records of a chain file, each checked against its CRCs as it is reached.
pub struct Items<'a> {
    bytes: &'a [u8],
    offset: usize,
    done: bool,
}

impl<'a> Iterator for Items<'a> {
    type Item = Result<Item<'a>, FrameError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.offset == self.bytes.len() {
            return None;
        }
        let item = self.read_at(self.offset);
        match &item {
            Ok(Item::Record { end, .. }) => self.offset = *end as usize,
            Ok(Item::Incomplete { .. }) | Err(_) => self.done = true,
        }
        Some(item)
    }
}

impl<'a> Items<'a> {
    /// The record starting at `offset`, which is inside the file.
    fn read_at(&self, offset: usize) -> Result<Item<'a>, FrameError> {
        let rest = &self.bytes[offset..];
        let at = offset as u64;
        let fail = |fault| Err(FrameError { offset: at, fault });
        let Some((length_bytes, length_crc)) = rest.get(..4).zip(rest.get(4..8)) else {
            return Ok(Item::Incomplete { offset: at });
        };
        if crc32fast::hash(length_bytes).to_be_bytes() != length_crc {
            return fail(FrameFault::DamagedLength);
        }
        let body_end = 8 + u32::from_be_bytes(be_u32(length_bytes)) as usize;
        let Some((body, body_crc)) = rest.get(8..body_end).zip(rest.get(body_end..body_end + 4))
        else {
            return Ok(Item::Incomplete { offset: at });
        };
        if crc32fast::hash(body).to_be_bytes() != body_crc {
            return fail(FrameFault::ChecksumMismatch);
        }
        Ok(Item::Record {
            offset: at,
            end: (offset + body_end + 4) as u64,
            body,
        })
    }
}

/// The four bytes of a slice known to hold four.
fn be_u32(bytes: &[u8]) -> [u8; 4] {
    let mut out = [0; 4];
    out.copy_from_slice(&bytes[..4]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_of(bodies: &[&[u8]]) -> Vec<u8> {
        let mut bytes = header().to_vec();
        for body in bodies {
            frame(body, &mut bytes).unwrap();
        }
        bytes
    }

    #[test]
    fn records_come_back_with_their_offsets() {
        let bytes = file_of(&[b"one", b"", b"three"]);
        let read: Vec<Item> = items(&bytes).unwrap().map(Result::unwrap).collect();
        assert_eq!(
            read,
            vec![
                Item::Record {
                    offset: 12,
                    end: 27,
                    body: b"one"
                },
                Item::Record {
                    offset: 27,
                    end: 39,
                    body: b""
                },
                Item::Record {
                    offset: 39,
                    end: 56,
                    body: b"three"
                },
            ]
        );
    }

    #[test]
    fn a_record_cut_short_is_incomplete_but_a_damaged_one_is_an_error() {
        let bytes = file_of(&[b"one", b"three"]);
        for cut in 28..bytes.len() {
            let last = items(&bytes[..cut]).unwrap().last().unwrap();
            assert_eq!(last, Ok(Item::Incomplete { offset: 27 }), "cut at {cut}");
        }
        let mut damaged_length = bytes.clone();
        damaged_length[30] ^= 0x01;
        assert_eq!(
            items(&damaged_length).unwrap().nth(1),
            Some(Err(FrameError {
                offset: 27,
                fault: FrameFault::DamagedLength
            }))
        );
        let mut damaged_body = bytes;
        damaged_body[36] ^= 0x80;
        assert_eq!(
            items(&damaged_body).unwrap().nth(1),
            Some(Err(FrameError {
                offset: 27,
                fault: FrameFault::ChecksumMismatch
            }))
        );
    }

    #[test]
    fn format_1_and_foreign_files_are_refused() {
        let mut format_1 = 3u32.to_be_bytes().to_vec();
        format_1.extend_from_slice(b"abc");
        format_1.extend_from_slice(&[0; 9]);
        assert_eq!(
            items(&format_1).err().map(|e| e.fault),
            Some(FrameFault::NotAChainFile)
        );
        assert_eq!(
            items(&header()[..7]).err().map(|e| e.fault),
            Some(FrameFault::TruncatedHeader)
        );
        let mut format_3 = header();
        format_3[11] = 3;
        assert_eq!(
            items(&format_3).err().map(|e| e.fault),
            Some(FrameFault::UnsupportedVersion { found: 3 })
        );
    }
}
