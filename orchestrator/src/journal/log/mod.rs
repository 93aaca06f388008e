//! The journal of record: an append-only log of checksummed records, synced before an append
//! returns.
//!
//! On disk it is a directory of segments named by the sequence number of their first record
//! (`00000000000000000001.log`); [`record`] says how a record is laid out. After each sync the
//! last entry acknowledged (its sequence number and hash) is written to `head`, outside the
//! log: opening the log checks every record of every segment against it ([`scan`]), so a crash
//! can cost only a torn write after that entry (never acknowledged, and cut off), and damage
//! or a cut anywhere else stops the start, naming the file, the byte and the entry.
//!
//! Retention removes whole segments from the front. Before it does, it writes the [`Anchor`]
//! (the last removed entry's sequence number and hash) to `anchor`, so the chain of what
//! remains still starts from a known hash.

mod mem;
pub mod record;
mod scan;

pub use mem::MemLog;
pub use scan::Damage;

use std::{
    fs::{self, File, OpenOptions},
    io::{self, BufReader, Write},
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    sync::Arc,
};

/// A BLAKE3 hash: of one record's bytes, and so of an entry and everything before it.
pub type Hash = [u8; 32];

/// A point of the chain: an entry's sequence number and hash. As the retention anchor, where
/// the chain of the remaining entries starts (the entry before the first one kept; zero for a
/// journal that has kept everything); as the head mark, the last entry acknowledged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Anchor {
    pub seq: u64,
    pub hash: Hash,
}

/// Why an append failed, and so what is known of the log after it.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Nothing of the append is in the log (what was written was cut off again): the log is
    /// as it was, and the append may be tried again (a disk that was full).
    #[error("{0}")]
    NotWritten(io::Error),
    /// The sync or `meanwhile` failed: what reached the disk, and the index, is unknown.
    #[error("{0}")]
    Unknown(io::Error),
}

/// Where the journal's records are kept. Appends are durable when `append` returns.
pub trait Log: Send + 'static {
    /// Appends records whose first has sequence number `first_seq` and whose last hashes to
    /// `last_hash`, then syncs. `meanwhile` runs while the sync is under way (the index write,
    /// which needs no disk wait of its own); the append returns once both are done, with the
    /// sync's error first.
    fn append(
        &mut self,
        first_seq: u64,
        records: &[Vec<u8>],
        last_hash: Hash,
        meanwhile: &mut dyn FnMut() -> io::Result<()>,
    ) -> Result<(), Failure>;

    /// Calls `f` with every record of the segments that may hold `from_seq` or later, in order.
    /// The caller skips records before `from_seq`.
    fn replay(&self, from_seq: u64, f: &mut dyn FnMut(&[u8]) -> io::Result<()>) -> io::Result<()>;

    /// The last record, to learn the next sequence number.
    fn last(&self) -> Option<&[u8]>;

    /// A reader of the records as stored, for other threads while appends go on.
    fn reader(&self) -> Arc<dyn LogReader>;

    /// The first sequence number of each segment, ascending; the last segment is being written.
    fn segments(&self) -> Vec<u64>;

    /// Removes the segments before `anchor.seq + 1`, which must start a segment, after making
    /// `anchor` durable.
    fn compact(&mut self, anchor: Anchor) -> io::Result<()>;
}

/// What a [`LogReader`] passes for each record: its bytes, or what is wrong with it.
pub type Stored<'a> = Result<&'a [u8], Unreadable>;

/// A stored record that cannot be read back, and where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("in `{}` at byte {offset}: {bad}", segment.display())]
pub struct Unreadable {
    pub segment: PathBuf,
    pub offset: u64,
    pub bad: record::Bad,
}

/// Reads the records as they are stored, without trusting them.
pub trait LogReader: Send + Sync {
    /// Where the stored chain starts.
    fn anchor(&self) -> io::Result<Anchor>;

    /// The last entry acknowledged, as the head mark holds it; `None` without one.
    fn head(&self) -> io::Result<Option<Anchor>>;

    /// Calls `f` with each record in order until it returns `false`. A record that cannot be
    /// read is passed as `Err` with what is wrong, and reading stops there.
    fn read(&self, f: &mut dyn FnMut(Stored<'_>) -> bool) -> io::Result<()>;

    /// The bytes the records take, segment headers included.
    fn size(&self) -> io::Result<u64> {
        Ok(self.segments()?.iter().map(|(_, bytes)| bytes).sum())
    }

    /// Each segment's first sequence number and size in bytes, oldest first.
    fn segments(&self) -> io::Result<Vec<(u64, u64)>>;

    /// Bytes free for the log on its file system; `None` where there is no disk.
    fn free_space(&self) -> io::Result<Option<u64>> {
        Ok(None)
    }

    /// Whether a write of some size reaches the disk now (after a disk was full).
    fn probe(&self) -> io::Result<()> {
        Ok(())
    }
}

/// Segment size by default: large enough that files stay few, small enough that retention can
/// free space in useful steps.
pub const SEGMENT_BYTES: u64 = 64 << 20;
const ANCHOR_FILE: &str = "anchor";
const HEAD_FILE: &str = "head";

pub struct FileLog {
    dir: PathBuf,
    segment_bytes: u64,
    /// First sequence number of each segment, ascending.
    segments: Vec<u64>,
    /// The segment being written; shared with the [`Syncer`] for each sync.
    file: Arc<File>,
    len: u64,
    last: Option<Vec<u8>>,
    buf: Vec<u8>,
    syncer: Syncer,
    /// The head mark, rewritten in place after every sync. Not synced itself (the page cache
    /// outlives a crash of the process; after a power cut it may be older than the log, never
    /// newer): synced when a segment ends and when the log closes.
    head: File,
}

/// A thread that syncs the segment being written when asked, so the writer can write the
/// index meanwhile. It ends with the log.
struct Syncer {
    ask: std::sync::mpsc::Sender<Arc<File>>,
    done: std::sync::mpsc::Receiver<io::Result<()>>,
}

impl Syncer {
    fn start() -> io::Result<Self> {
        let (ask, asked) = std::sync::mpsc::channel::<Arc<File>>();
        let (tell, done) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("parapet-journal-sync".into())
            .spawn(move || {
                for file in asked {
                    if tell.send(file.sync_data()).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Self { ask, done })
    }

    /// Syncs `file` while `meanwhile` runs here; the sync's error comes first.
    fn sync_while(
        &self,
        file: &Arc<File>,
        meanwhile: &mut dyn FnMut() -> io::Result<()>,
    ) -> io::Result<()> {
        let gone = || io::Error::other("the journal's sync thread has stopped");
        self.ask.send(file.clone()).map_err(|_| gone())?;
        let other = meanwhile();
        self.done.recv().map_err(|_| gone())??;
        other
    }
}

impl FileLog {
    pub fn open(dir: &Path) -> io::Result<Self> {
        Self::with_segment_bytes(dir, SEGMENT_BYTES)
    }

    /// A log whose segments end once they pass `segment_bytes`. Checks every record first;
    /// a torn write after the last acknowledged entry is cut off, anything else wrong is an
    /// error ([`Damage`]).
    pub fn with_segment_bytes(dir: &Path, segment_bytes: u64) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let anchor = read_anchor(dir)?;
        let mut segments = list_segments(dir)?;
        // A compaction cut short between the anchor and the removal: finish it.
        while segments.len() > 1 && segments[1] <= anchor.seq + 1 {
            fs::remove_file(segment_path(dir, segments[0]))?;
            segments.remove(0);
        }
        if segments.is_empty() {
            segments.push(anchor.seq + 1);
        }
        let acked = record::read_point(&dir.join(HEAD_FILE))?;
        if acked.is_none() && segments.len() + usize::from(anchor.seq > 0) > 1 {
            tracing::warn!(
                dir = %dir.display(),
                "the journal has no head mark (written since this version): its end is checked against the index only, this once"
            );
        }
        let started = std::time::Instant::now();
        let scanned = scan::scan(dir, &segments, anchor, acked)?;
        tracing::info!(
            entries = scanned.entries,
            segments = segments.len(),
            mib = scanned.bytes >> 20,
            ms = started.elapsed().as_millis() as u64,
            "journal records checked"
        );
        let tail = *segments.last().unwrap_or(&1);
        let path = segment_path(dir, tail);
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)?;
        if scanned.tail_end < scanned.tail_len {
            tracing::warn!(
                segment = %path.display(),
                offset = scanned.tail_end,
                bytes = scanned.tail_len - scanned.tail_end,
                "cutting off a torn write after the last acknowledged entry"
            );
            file.set_len(scanned.tail_end)?;
            file.sync_all()?;
        }
        let head = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(HEAD_FILE))?;
        if let Some(last) = &scanned.last {
            // what is kept now is what the next start must find
            let point = Anchor {
                seq: record::entry_seq(last).unwrap_or_default(),
                hash: hash(last),
            };
            if acked != Some(point) {
                head.write_all_at(&record::encode_point(point), 0)?;
                head.sync_all()?;
            }
        }
        sync_dir(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            segment_bytes,
            segments,
            file: Arc::new(file),
            len: scanned.tail_end,
            last: scanned.last,
            buf: Vec::new(),
            syncer: Syncer::start()?,
            head,
        })
    }
}

impl FileLog {
    /// Ends the segment being written and starts the next with entry `first_seq`.
    fn roll(&mut self, first_seq: u64) -> io::Result<()> {
        self.head.sync_data()?;
        let path = segment_path(&self.dir, first_seq);
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)?;
        sync_dir(&self.dir)?;
        self.file = Arc::new(file);
        self.segments.push(first_seq);
        self.len = 0;
        Ok(())
    }
}

impl Drop for FileLog {
    fn drop(&mut self) {
        let _ = self.head.sync_data();
    }
}

fn hash(record: &[u8]) -> Hash {
    *blake3::hash(record).as_bytes()
}

impl Log for FileLog {
    fn append(
        &mut self,
        first_seq: u64,
        records: &[Vec<u8>],
        last_hash: Hash,
        meanwhile: &mut dyn FnMut() -> io::Result<()>,
    ) -> Result<(), Failure> {
        if self.len >= self.segment_bytes {
            self.roll(first_seq).map_err(Failure::NotWritten)?;
        }
        self.buf.clear();
        for record in records {
            record::frame(&mut self.buf, record).map_err(Failure::NotWritten)?;
        }
        if let Err(e) = (&*self.file).write_all(&self.buf) {
            // a full disk: cut off what part of the batch was written, and the log is as it was
            return match self.file.set_len(self.len) {
                Ok(()) => Err(Failure::NotWritten(e)),
                Err(_) => Err(Failure::Unknown(e)),
            };
        }
        self.len += self.buf.len() as u64;
        self.last = records.last().cloned();
        self.syncer
            .sync_while(&self.file, meanwhile)
            .map_err(Failure::Unknown)?;
        let acked = Anchor {
            seq: first_seq + records.len() as u64 - 1,
            hash: last_hash,
        };
        // Durable already; a head mark that cannot be written only weakens the next start's
        // check, which it says.
        if let Err(e) = self.head.write_all_at(&record::encode_point(acked), 0) {
            tracing::warn!(error = %e, "cannot write the journal's head mark");
        }
        Ok(())
    }

    fn replay(&self, from_seq: u64, f: &mut dyn FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
        let start = self
            .segments
            .partition_point(|&first| first <= from_seq)
            .saturating_sub(1);
        for &first in &self.segments[start..] {
            let path = segment_path(&self.dir, first);
            let mut reader = BufReader::with_capacity(1 << 20, File::open(&path)?);
            let mut record = Vec::new();
            while let Some(read) = record::read(&mut reader, &mut record)? {
                read.map_err(|bad| corrupt(format!("a record in `{}`: {bad}", path.display())))?;
                f(&record)?;
            }
        }
        Ok(())
    }

    fn last(&self) -> Option<&[u8]> {
        self.last.as_deref()
    }

    fn reader(&self) -> Arc<dyn LogReader> {
        Arc::new(DirReader(self.dir.clone()))
    }

    fn segments(&self) -> Vec<u64> {
        self.segments.clone()
    }

    fn compact(&mut self, anchor: Anchor) -> io::Result<()> {
        let first_kept = anchor.seq + 1;
        let Some(keep) = self.segments.iter().position(|&s| s == first_kept) else {
            return Err(io::Error::other(format!(
                "entry {first_kept} does not start a segment"
            )));
        };
        record::write_point_durably(&self.dir, ANCHOR_FILE, anchor)?;
        for &first in &self.segments[..keep] {
            fs::remove_file(segment_path(&self.dir, first))?;
        }
        sync_dir(&self.dir)?;
        self.segments.drain(..keep);
        Ok(())
    }
}

/// A reader of the log in `dir` that changes nothing there: for verifying a copy, or a
/// stopped server's journal, offline.
pub fn read_only(dir: &Path) -> Arc<dyn LogReader> {
    Arc::new(DirReader(dir.to_path_buf()))
}

/// Reads a log directory on its own, while the writer appends.
struct DirReader(PathBuf);

impl LogReader for DirReader {
    fn anchor(&self) -> io::Result<Anchor> {
        read_anchor(&self.0)
    }

    fn head(&self) -> io::Result<Option<Anchor>> {
        record::read_point(&self.0.join(HEAD_FILE))
    }

    fn read(&self, f: &mut dyn FnMut(Stored<'_>) -> bool) -> io::Result<()> {
        let mut record = Vec::new();
        for first in list_segments(&self.0)? {
            let path = segment_path(&self.0, first);
            let file = match File::open(&path) {
                Ok(file) => file,
                // removed by retention since the listing: its entries were before the anchor
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let mut reader = BufReader::with_capacity(1 << 20, file);
            let mut offset = 0u64;
            while let Some(read) = record::read(&mut reader, &mut record)? {
                if let Err(bad) = read {
                    f(Err(Unreadable {
                        segment: path,
                        offset,
                        bad,
                    }));
                    return Ok(());
                }
                if !f(Ok(&record)) {
                    return Ok(());
                }
                offset += (record::HEADER + record.len()) as u64;
            }
        }
        Ok(())
    }

    fn free_space(&self) -> io::Result<Option<u64>> {
        let stat = rustix::fs::statvfs(&self.0).map_err(io::Error::from)?;
        Ok(Some(stat.f_bavail.saturating_mul(stat.f_frsize)))
    }

    fn probe(&self) -> io::Result<()> {
        let path = self.0.join(".probe");
        let written = File::create(&path).and_then(|mut f| {
            f.write_all(&[0u8; 64 << 10])?;
            f.sync_data()
        });
        let _ = fs::remove_file(&path);
        written
    }

    fn segments(&self) -> io::Result<Vec<(u64, u64)>> {
        let mut out = Vec::new();
        for first in list_segments(&self.0)? {
            let bytes = fs::metadata(segment_path(&self.0, first)).map_or(0, |m| m.len());
            out.push((first, bytes));
        }
        Ok(out)
    }
}

fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(seq) = name
            .strip_suffix(".log")
            .and_then(|s| s.parse::<u64>().ok())
        {
            segments.push(seq);
        }
    }
    segments.sort_unstable();
    Ok(segments)
}

fn read_anchor(dir: &Path) -> io::Result<Anchor> {
    Ok(record::read_point(&dir.join(ANCHOR_FILE))?.unwrap_or_default())
}

fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.log"))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn corrupt(e: impl ToString) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("journal record is damaged: {}", e.to_string()),
    )
}

#[cfg(test)]
mod tests;
