//! The journal of record: an append-only log of checksummed records, synced before an append
//! returns.
//!
//! On disk it is a directory of segments named by the sequence number of their first record
//! (`00000000000000000001.log`). A record is `[len: u32 LE][crc32: u32 LE][bytes]`. A crash can
//! leave only a torn record at the very end of the last segment, which was never acknowledged;
//! opening the log cuts it off. A bad record anywhere else is corruption and stops the start.
//!
//! Retention removes whole segments from the front. Before it does, it writes the [`Anchor`]
//! (the last removed entry's sequence number and hash) to `anchor`, so the chain of what
//! remains still starts from a known hash.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, BufReader, Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
    sync::Arc,
};

/// A BLAKE3 hash: of one record's bytes, and so of an entry and everything before it.
pub type Hash = [u8; 32];

/// Where the chain of the remaining entries starts: the entry before the first one kept. Zero
/// for a journal that has kept everything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Anchor {
    pub seq: u64,
    pub hash: Hash,
}

/// Where the journal's records are kept. Appends are durable when `append` returns.
pub trait Log: Send + 'static {
    /// Appends records whose first has sequence number `first_seq`, then syncs. `meanwhile`
    /// runs while the sync is under way (the index write, which needs no disk wait of its own);
    /// the append returns once both are done, with the sync's error first.
    fn append(
        &mut self,
        first_seq: u64,
        records: &[Vec<u8>],
        meanwhile: &mut dyn FnMut() -> io::Result<()>,
    ) -> io::Result<()>;

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
pub type Stored<'a> = Result<&'a [u8], String>;

/// Reads the records as they are stored, without trusting them.
pub trait LogReader: Send + Sync {
    /// Where the stored chain starts.
    fn anchor(&self) -> io::Result<Anchor>;

    /// Calls `f` with each record in order until it returns `false`. A record that cannot be
    /// read is passed as `Err` with what is wrong, and reading stops there.
    fn read(&self, f: &mut dyn FnMut(Stored<'_>) -> bool) -> io::Result<()>;

    /// The bytes the records take, segment headers included.
    fn size(&self) -> io::Result<u64> {
        Ok(self.segments()?.iter().map(|(_, bytes)| bytes).sum())
    }

    /// Each segment's first sequence number and size in bytes, oldest first.
    fn segments(&self) -> io::Result<Vec<(u64, u64)>>;
}

/// Segment size by default: large enough that files stay few, small enough that retention can
/// free space in useful steps.
pub const SEGMENT_BYTES: u64 = 64 << 20;
const ANCHOR_FILE: &str = "anchor";
const HEADER: usize = 8;
/// No single record is near this; a larger length means a corrupt header.
const MAX_RECORD: usize = 16 << 20;

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

    /// A log whose segments end once they pass `segment_bytes`.
    pub fn with_segment_bytes(dir: &Path, segment_bytes: u64) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let mut segments = list_segments(dir)?;
        if segments.is_empty() {
            segments.push(read_anchor(dir)?.seq + 1);
        }
        let tail = *segments.last().unwrap_or(&1);
        let path = segment_path(dir, tail);
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)?;
        let (valid, last) = scan_tail(&mut file)?;
        let len = file.metadata()?.len();
        if valid < len {
            tracing::warn!(
                segment = %path.display(),
                bytes = len - valid,
                "cutting off a torn record at the end of the journal (never acknowledged)"
            );
            file.set_len(valid)?;
            file.sync_all()?;
        }
        sync_dir(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            segment_bytes,
            segments,
            file: Arc::new(file),
            len: valid,
            last,
            buf: Vec::new(),
            syncer: Syncer::start()?,
        })
    }
}

impl Log for FileLog {
    fn append(
        &mut self,
        first_seq: u64,
        records: &[Vec<u8>],
        meanwhile: &mut dyn FnMut() -> io::Result<()>,
    ) -> io::Result<()> {
        if self.len >= self.segment_bytes {
            let path = segment_path(&self.dir, first_seq);
            self.file = Arc::new(
                OpenOptions::new()
                    .create(true)
                    .read(true)
                    .append(true)
                    .open(path)?,
            );
            sync_dir(&self.dir)?;
            self.segments.push(first_seq);
            self.len = 0;
        }
        self.buf.clear();
        for record in records {
            let len =
                u32::try_from(record.len()).map_err(|_| io::Error::other("record too large"))?;
            self.buf.extend_from_slice(&len.to_le_bytes());
            self.buf
                .extend_from_slice(&crc32fast::hash(record).to_le_bytes());
            self.buf.extend_from_slice(record);
        }
        (&*self.file).write_all(&self.buf)?;
        self.len += self.buf.len() as u64;
        self.last = records.last().cloned();
        self.syncer.sync_while(&self.file, meanwhile)
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
            while read_record(&mut reader, &mut record)? {
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
        let mut bytes = Vec::with_capacity(44);
        bytes.extend_from_slice(&anchor.seq.to_le_bytes());
        bytes.extend_from_slice(&anchor.hash);
        bytes.extend_from_slice(&crc32fast::hash(&bytes).to_le_bytes());
        let tmp = self.dir.join("anchor.tmp");
        let mut file = File::create(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, self.dir.join(ANCHOR_FILE))?;
        sync_dir(&self.dir)?;
        for &first in &self.segments[..keep] {
            fs::remove_file(segment_path(&self.dir, first))?;
        }
        sync_dir(&self.dir)?;
        self.segments.drain(..keep);
        Ok(())
    }
}

/// Reads a log directory on its own, while the writer appends.
struct DirReader(PathBuf);

impl LogReader for DirReader {
    fn anchor(&self) -> io::Result<Anchor> {
        read_anchor(&self.0)
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
            loop {
                match read_record(&mut reader, &mut record) {
                    Ok(true) => {
                        if !f(Ok(&record)) {
                            return Ok(());
                        }
                    }
                    Ok(false) => break,
                    Err(e) => {
                        f(Err(format!("in {}: {e}", path.display())));
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
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
    let bytes = match fs::read(dir.join(ANCHOR_FILE)) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Anchor::default()),
        Err(e) => return Err(e),
    };
    let damaged = || corrupt("the retention anchor file");
    if bytes.len() != 44 || crc32fast::hash(&bytes[..40]).to_le_bytes() != bytes[40..] {
        return Err(damaged());
    }
    let seq = u64::from_le_bytes(bytes[..8].try_into().map_err(|_| damaged())?);
    let hash = bytes[8..40].try_into().map_err(|_| damaged())?;
    Ok(Anchor { seq, hash })
}

fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.log"))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Reads one record into `out`; `Ok(false)` at a clean end. A torn or corrupt record is an error.
fn read_record(r: &mut impl Read, out: &mut Vec<u8>) -> io::Result<bool> {
    let mut header = [0u8; HEADER];
    match r.read_exact(&mut header[..1]) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
        Err(e) => return Err(e),
    }
    r.read_exact(&mut header[1..]).map_err(corrupt)?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len > MAX_RECORD {
        return Err(corrupt("record length is impossible"));
    }
    out.resize(len, 0);
    r.read_exact(out).map_err(corrupt)?;
    if crc32fast::hash(out) != crc {
        return Err(corrupt("record checksum does not match"));
    }
    Ok(true)
}

fn corrupt(e: impl ToString) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("journal record is damaged: {}", e.to_string()),
    )
}

/// Finds where the valid records of the tail segment end, and the last of them.
///
/// A bad record is a torn write only if it reaches the end of the file: records are written
/// whole and synced in order, so a crash can damage nothing but the last one. A bad record with
/// more data after it is damage, and an error.
fn scan_tail(file: &mut File) -> io::Result<(u64, Option<Vec<u8>>)> {
    let file_len = file.metadata()?.len();
    file.seek(SeekFrom::Start(0))?;
    let mut reader = BufReader::with_capacity(1 << 20, &*file);
    let (mut valid, mut last, mut record) = (0u64, None, Vec::new());
    loop {
        match read_record(&mut reader, &mut record) {
            Ok(true) => {
                valid += (HEADER + record.len()) as u64;
                last = Some(record.clone());
            }
            Ok(false) => break,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                let mut header = [0u8; 4];
                file.seek(SeekFrom::Start(valid))?;
                let declared = match file.read_exact(&mut header) {
                    Ok(()) => u64::from(u32::from_le_bytes(header)),
                    Err(_) => 0,
                };
                if valid + HEADER as u64 + declared >= file_len {
                    break;
                }
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("journal record at byte {valid} is damaged and is not the last: {e}"),
                ));
            }
            Err(e) => return Err(e),
        }
    }
    Ok((valid, last))
}

/// The in-memory twin of [`FileLog`], for tests: one segment, shared with its readers.
#[derive(Default)]
pub struct MemLog {
    records: Arc<parking_lot::RwLock<Vec<Vec<u8>>>>,
    last: Option<Vec<u8>>,
}

impl MemLog {
    /// The stored records, to tamper with in tests.
    pub fn records(&self) -> Arc<parking_lot::RwLock<Vec<Vec<u8>>>> {
        self.records.clone()
    }
}

impl Log for MemLog {
    fn append(
        &mut self,
        _first_seq: u64,
        records: &[Vec<u8>],
        meanwhile: &mut dyn FnMut() -> io::Result<()>,
    ) -> io::Result<()> {
        self.records.write().extend_from_slice(records);
        self.last = records.last().cloned();
        meanwhile()
    }

    fn replay(&self, _from_seq: u64, f: &mut dyn FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
        self.records.read().iter().try_for_each(|r| f(r))
    }

    fn last(&self) -> Option<&[u8]> {
        self.last.as_deref()
    }

    fn reader(&self) -> Arc<dyn LogReader> {
        Arc::new(MemReader(self.records.clone()))
    }

    fn segments(&self) -> Vec<u64> {
        vec![1]
    }

    fn compact(&mut self, _anchor: Anchor) -> io::Result<()> {
        Err(io::Error::other("an in-memory log keeps everything"))
    }
}

struct MemReader(Arc<parking_lot::RwLock<Vec<Vec<u8>>>>);

impl LogReader for MemReader {
    fn anchor(&self) -> io::Result<Anchor> {
        Ok(Anchor::default())
    }

    fn read(&self, f: &mut dyn FnMut(Stored<'_>) -> bool) -> io::Result<()> {
        let records = self.0.read().clone();
        for r in &records {
            if !f(Ok(r)) {
                break;
            }
        }
        Ok(())
    }

    fn segments(&self) -> io::Result<Vec<(u64, u64)>> {
        let bytes = self
            .0
            .read()
            .iter()
            .map(|r| (r.len() + HEADER) as u64)
            .sum();
        Ok(vec![(1, bytes)])
    }
}
