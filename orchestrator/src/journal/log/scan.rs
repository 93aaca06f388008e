//! What opening the log checks before anything is built on it.
//!
//! Every record of every segment is read and checked: its checksum, that it holds the entry
//! whose turn it is (no entry missing, none twice, each segment starting where the one before
//! ended or at the retention anchor), and that the entry acknowledged last (the head mark) is
//! there, unchanged. A crash can leave only one kind of damage: a torn write after the last
//! acknowledged entry, which was never answered; that is cut off. Anything else stops the
//! start with the segment file, the byte offset and the entry's sequence number.

use std::{
    fs::File,
    io::{self, BufReader},
    path::{Path, PathBuf},
};

use super::{
    Anchor, hash,
    record::{self, Bad, HEADER, entry_seq},
    segment_path,
};

/// What the check found in good order.
#[derive(Debug, Default)]
pub(super) struct Scanned {
    /// The last record kept.
    pub last: Option<Vec<u8>>,
    /// Where the good records of the segment being written end; what follows is a torn write.
    pub tail_end: u64,
    /// That segment's length as found.
    pub tail_len: u64,
    pub entries: u64,
    pub bytes: u64,
}

/// Stored records that cannot be trusted where the journal needs them.
#[derive(Debug, thiserror::Error)]
#[error(
    "the journal is damaged: `{}` at byte {offset} (entry {seq}): {what}; {}. Parapet will not start on a damaged journal: restore the data directory from a backup, or keep a copy for investigation and move the damaged segments away",
    .segment.display(),
    match .acknowledged { Some(a) => format!("entries up to {a} were acknowledged, so this is not a torn write"), None => "this is not a torn write".to_owned() }
)]
pub struct Damage {
    pub segment: PathBuf,
    pub offset: u64,
    /// The entry that should be there.
    pub seq: u64,
    pub what: String,
    pub acknowledged: Option<u64>,
}

impl From<Damage> for io::Error {
    fn from(d: Damage) -> Self {
        io::Error::new(io::ErrorKind::InvalidData, d)
    }
}

/// Checks every segment, oldest first. `acked` is the head mark, when there is one.
pub(super) fn scan(
    dir: &Path,
    segments: &[u64],
    anchor: Anchor,
    acked: Option<Anchor>,
) -> io::Result<Scanned> {
    let mut out = Scanned::default();
    let mut expected = anchor.seq + 1;
    let mut record = Vec::new();
    let mut last = Vec::new();
    for (i, &first) in segments.iter().enumerate() {
        let path = segment_path(dir, first);
        let is_tail = i + 1 == segments.len();
        let damage = |offset, seq, what: String| Damage {
            segment: path.clone(),
            offset,
            seq,
            what,
            acknowledged: acked.map(|a| a.seq),
        };
        if first != expected {
            let what = if first > expected {
                format!(
                    "the segment starts with entry {first}, so entries {expected} to {} are missing",
                    first - 1
                )
            } else {
                format!("the segment starts with entry {first}, which an earlier segment holds")
            };
            return Err(damage(0, expected, what).into());
        }
        let file = match File::open(&path) {
            Ok(file) => file,
            // a new journal's first segment, not created yet
            Err(e) if is_tail && e.kind() == io::ErrorKind::NotFound => break,
            Err(e) => return Err(e),
        };
        let len = file.metadata()?.len();
        out.bytes += len;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut offset = 0u64;
        loop {
            let problem = match record::read(&mut reader, &mut record)? {
                None => break,
                Some(Err(bad)) => Problem::Bad(bad),
                Some(Ok(())) => match entry_seq(&record) {
                    Some(seq) if seq != expected => Problem::Misplaced(seq),
                    None => Problem::Misplaced(0),
                    Some(_) => match acked {
                        Some(a) if a.seq == expected && hash(&record) != a.hash => {
                            Problem::NotAcknowledged
                        }
                        _ => {
                            offset += (HEADER + record.len()) as u64;
                            expected += 1;
                            out.entries += 1;
                            std::mem::swap(&mut last, &mut record);
                            continue;
                        }
                    },
                },
            };
            let torn = is_tail
                && match acked {
                    // after the last acknowledged entry: a write a crash cut short
                    Some(a) => expected > a.seq,
                    None => problem.looks_torn(offset, record.len(), len),
                };
            if torn {
                break;
            }
            return Err(damage(offset, expected, problem.to_string()).into());
        }
        if is_tail {
            out.tail_end = offset;
            out.tail_len = len;
        }
    }
    let kept = expected - 1;
    if let Some(a) = acked
        && a.seq > kept
    {
        let tail = segments
            .last()
            .map(|&s| segment_path(dir, s))
            .unwrap_or_default();
        return Err(Damage {
            offset: out.tail_end,
            segment: tail,
            seq: kept + 1,
            what: format!(
                "the journal ends at entry {kept}, so entries {} to {} are missing: its end was cut off",
                kept + 1,
                a.seq
            ),
            acknowledged: Some(a.seq),
        }
        .into());
    }
    if out.entries > 0 {
        out.last = Some(last);
    }
    Ok(out)
}

enum Problem {
    Bad(Bad),
    /// A sound record holding another entry than the one whose turn it is.
    Misplaced(u64),
    /// The entry the head mark acknowledged hashes differently.
    NotAcknowledged,
}

impl Problem {
    /// Without a head mark, the old rule: only a record that runs to the end of the file can be
    /// a torn write.
    fn looks_torn(&self, offset: u64, len: usize, file_len: u64) -> bool {
        match self {
            Self::Bad(Bad::Short) => true,
            Self::Bad(Bad::Length(n)) => offset + HEADER as u64 + u64::from(*n) >= file_len,
            Self::Bad(Bad::Checksum) | Self::Misplaced(_) => {
                offset + (HEADER + len) as u64 >= file_len
            }
            Self::NotAcknowledged => false,
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bad(bad) => write!(f, "the record cannot be read: {bad}"),
            Self::Misplaced(0) => f.write_str("the record is not a journal entry"),
            Self::Misplaced(seq) => write!(f, "the record holds entry {seq} out of its place"),
            Self::NotAcknowledged => {
                f.write_str("the entry differs from the one that was acknowledged")
            }
        }
    }
}
