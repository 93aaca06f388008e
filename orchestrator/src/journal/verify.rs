//! Walking the hash chain: does the stored journal still say what was written?
//!
//! The walk reads the records as stored (not the index's copies), recomputes each entry's hash
//! and checks it against what the next entry carries, against the index's checkpoints and head,
//! against the index's copy of the entry (what queries read), and against any hash an auditor
//! kept from an earlier verification. It reports every break it finds, first one first.

use std::{collections::BTreeMap, fmt, io};

use super::{
    Entry, Index, decode, hash, hex,
    log::{Anchor, Hash, LogReader},
};

/// What is wrong at one place in the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Break {
    /// The entry's bytes are not what was written.
    Modified,
    /// Entries are missing.
    Removed,
    /// An entry appears that was never written in this place (its number is taken).
    Inserted,
    /// The entry is out of its place.
    Reordered,
    /// The record cannot be read at all.
    Damaged,
    /// The index's copy, which queries read, differs from the journal's.
    IndexDiffers,
}

impl Break {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Modified => "modified",
            Self::Removed => "removed",
            Self::Inserted => "inserted",
            Self::Reordered => "reordered",
            Self::Damaged => "damaged",
            Self::IndexDiffers => "index_differs",
        }
    }
}

impl fmt::Display for Break {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One break in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The first entry affected.
    pub seq: u64,
    pub kind: Break,
    pub detail: String,
}

/// What a walk of the chain found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Where the kept chain starts (after retention, the last entry removed).
    pub anchor: Anchor,
    /// The last entry the walk covered and its hash: keep these to check later walks against.
    pub head: (u64, Hash),
    pub entries: u64,
    /// Checkpoints (the index's and the expected ones) compared.
    pub checkpoints: u64,
    /// First one first; at most [`MAX_PROBLEMS`].
    pub problems: Vec<Problem>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

pub const MAX_PROBLEMS: usize = 100;

/// Walks the chain up to the index's head at the start of the walk; `expected` are hashes an
/// auditor kept (sequence number, hash). Without an index (a copy of the data directory
/// checked offline), up to the log's head mark, and the index's copies are not compared.
pub fn verify(
    reader: &dyn LogReader,
    index: Option<&Index>,
    expected: &[(u64, Hash)],
) -> io::Result<Report> {
    // the head first: records written after it are not covered
    let (head_seq, head_hash) = match index {
        Some(index) => index.head()?,
        None => match reader.head()? {
            Some(mark) => (mark.seq, mark.hash),
            None => {
                return Err(io::Error::other(
                    "the journal has no head mark: start Parapet on it once, or verify it online",
                ));
            }
        },
    };
    let anchor = reader.anchor()?;
    let mut checkpoints: BTreeMap<u64, (Hash, &'static str)> = match index {
        Some(index) => index.checkpoints()?,
        None => Vec::new(),
    }
    .into_iter()
    .map(|(seq, h)| (seq, (h, "the index's checkpoint")))
    .collect();
    for (seq, h) in expected {
        checkpoints.insert(*seq, (*h, "the hash expected"));
    }
    let mut walk = Walk {
        index,
        expected_seq: anchor.seq + 1,
        previous: Some((anchor.seq, anchor.hash)),
        missing: BTreeMap::new(),
        problems: Vec::new(),
        entries: 0,
        in_order: (anchor.seq, anchor.hash),
        checkpoints: &checkpoints,
        checked: 0,
        error: None,
    };
    reader.read(&mut |record| walk.step(record, head_seq))?;
    if let Some(e) = walk.error.take() {
        return Err(e);
    }
    for (start, end) in std::mem::take(&mut walk.missing) {
        walk.problem(start, Break::Removed, removed(start, end));
    }
    let (last, last_hash) = walk.in_order;
    if last < head_seq {
        walk.problem(last + 1, Break::Removed, removed(last + 1, head_seq));
    } else if head_seq > anchor.seq && last_hash != head_hash {
        walk.problem(
            head_seq,
            Break::Modified,
            format!(
                "the last entry does not hash to the head the index recorded ({})",
                hex(&head_hash)
            ),
        );
    }
    for (seq, (_, whose)) in checkpoints.range(last + 1..) {
        walk.problem(
            *seq,
            Break::Removed,
            format!("{whose} at entry {seq} has no entry: the journal ends at entry {last}"),
        );
    }
    let mut problems = walk.problems;
    problems.sort_by_key(|p| (p.seq, p.kind));
    problems.dedup_by(|a, b| (a.seq, a.kind) == (b.seq, b.kind));
    problems.truncate(MAX_PROBLEMS);
    Ok(Report {
        anchor,
        head: walk.in_order,
        entries: walk.entries,
        checkpoints: walk.checked,
        problems,
    })
}

fn removed(start: u64, end: u64) -> String {
    if start == end {
        format!("entry {start} is missing")
    } else {
        format!("entries {start} to {end} are missing")
    }
}

struct Walk<'a> {
    /// The index whose copies are compared; none offline.
    index: Option<&'a Index>,
    /// The next sequence number the chain should hold.
    expected_seq: u64,
    /// The record read just before, when it was in its place: (seq, hash).
    previous: Option<(u64, Hash)>,
    /// Gaps seen so far, start → end; a late entry filling one was reordered.
    missing: BTreeMap<u64, u64>,
    problems: Vec<Problem>,
    entries: u64,
    /// The last entry read in its place, and its hash.
    in_order: (u64, Hash),
    checkpoints: &'a BTreeMap<u64, (Hash, &'static str)>,
    checked: u64,
    error: Option<io::Error>,
}

impl Walk<'_> {
    fn problem(&mut self, seq: u64, kind: Break, detail: String) {
        if self.problems.len() < MAX_PROBLEMS * 2 {
            self.problems.push(Problem { seq, kind, detail });
        }
    }

    /// Checks one stored record; `false` ends the walk.
    fn step(&mut self, record: super::log::Stored<'_>, head_seq: u64) -> bool {
        let bytes = match record {
            Ok(bytes) => bytes,
            // past the head, a record being written now
            Err(_) if self.in_order.0 >= head_seq => return false,
            Err(why) => {
                let seq = self.expected_seq;
                self.problem(
                    seq,
                    Break::Damaged,
                    format!("the record after entry {} cannot be read: {why}", seq - 1),
                );
                return false;
            }
        };
        let entry: Entry = match decode(bytes) {
            Ok(entry) => entry,
            Err(e) => {
                let seq = self.expected_seq;
                self.problem(
                    seq,
                    Break::Damaged,
                    format!("the record after entry {} is not an entry: {e}", seq - 1),
                );
                return false;
            }
        };
        let (seq, own) = (entry.seq, hash(bytes));
        if seq > head_seq && seq >= self.expected_seq {
            return false;
        }
        self.entries += 1;
        if seq == self.expected_seq {
            if let Some((before, before_hash)) = self.previous
                && before + 1 == seq
                && entry.prev != before_hash
            {
                let (at, detail) = if self.entries > 1 {
                    (
                        before,
                        format!("entry {before} no longer hashes to what entry {seq} recorded"),
                    )
                } else if before == 0 {
                    (seq, "the first entry does not start the chain".to_owned())
                } else {
                    (
                        seq,
                        format!(
                            "entry {seq} does not continue from the retention anchor (entry {before})"
                        ),
                    )
                };
                self.problem(at, Break::Modified, detail);
            }
            self.expected_seq = seq + 1;
            self.in_order = (seq, own);
            self.previous = Some((seq, own));
        } else if seq > self.expected_seq {
            self.missing.insert(self.expected_seq, seq - 1);
            self.expected_seq = seq + 1;
            self.in_order = (seq, own);
            self.previous = Some((seq, own));
        } else {
            self.previous = None;
            let gap = self
                .missing
                .range(..=seq)
                .next_back()
                .map(|(&s, &e)| (s, e))
                .filter(|&(_, end)| end >= seq);
            match gap {
                Some((start, end)) => {
                    self.missing.remove(&start);
                    if start < seq {
                        self.missing.insert(start, seq - 1);
                    }
                    if seq < end {
                        self.missing.insert(seq + 1, end);
                    }
                    let after = self.in_order.0;
                    self.problem(
                        seq,
                        Break::Reordered,
                        format!("entry {seq} is stored after entry {after}"),
                    );
                }
                None => {
                    let after = self.in_order.0;
                    self.problem(
                        seq,
                        Break::Inserted,
                        format!("a second entry {seq} is stored after entry {after}"),
                    );
                }
            }
            return true;
        }
        if let Some((h, whose)) = self.checkpoints.get(&seq) {
            self.checked += 1;
            if *h != own {
                self.problem(
                    seq,
                    Break::Modified,
                    format!("entry {seq} does not hash to {whose} ({})", hex(h)),
                );
            }
        }
        let Some(index) = self.index else {
            return true;
        };
        match index.entry_bytes(seq) {
            Ok(Some(copy)) if hash(&copy) == own => {}
            Ok(Some(_)) => self.problem(seq, Break::IndexDiffers, format!("the index's copy of entry {seq}, which queries read, differs from the journal's")),
            Ok(None) => self.problem(seq, Break::IndexDiffers, format!("the index has no copy of entry {seq}")),
            Err(e) => {
                self.error = Some(e);
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests;
