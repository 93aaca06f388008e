//! The journal of record: an append-only log of checksummed records, synced before an append
//! returns.
//!
//! On disk it is a directory of segments named by the sequence number of their first record
//! (`00000000000000000001.log`). A record is `[len: u32 LE][crc32: u32 LE][bytes]`. A crash can
//! leave only a torn record at the very end of the last segment, which was never acknowledged;
//! opening the log cuts it off. A bad record anywhere else is corruption and stops the start.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, BufReader, Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
};

/// Where the journal's records are kept. Appends are durable when `append` returns.
pub trait Log: Send + 'static {
    /// Appends records whose first has sequence number `first_seq`, then syncs.
    fn append(&mut self, first_seq: u64, records: &[Vec<u8>]) -> io::Result<()>;

    /// Calls `f` with every record of the segments that may hold `from_seq` or later, in order.
    /// The caller skips records before `from_seq`.
    fn replay(&self, from_seq: u64, f: &mut dyn FnMut(&[u8]) -> io::Result<()>) -> io::Result<()>;

    /// The last record, to learn the next sequence number.
    fn last(&self) -> Option<&[u8]>;
}

const SEGMENT_BYTES: u64 = 64 << 20;
const HEADER: usize = 8;
/// No single record is near this; a larger length means a corrupt header.
const MAX_RECORD: usize = 16 << 20;

pub struct FileLog {
    dir: PathBuf,
    /// First sequence number of each segment, ascending.
    segments: Vec<u64>,
    file: File,
    len: u64,
    last: Option<Vec<u8>>,
    buf: Vec<u8>,
}

impl FileLog {
    pub fn open(dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
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
        if segments.is_empty() {
            segments.push(1);
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
            segments,
            file,
            len: valid,
            last,
            buf: Vec::new(),
        })
    }
}

impl Log for FileLog {
    fn append(&mut self, first_seq: u64, records: &[Vec<u8>]) -> io::Result<()> {
        if self.len >= SEGMENT_BYTES {
            let path = segment_path(&self.dir, first_seq);
            self.file = OpenOptions::new()
                .create(true)
                .read(true)
                .append(true)
                .open(path)?;
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
        self.file.write_all(&self.buf)?;
        self.file.sync_data()?;
        self.len += self.buf.len() as u64;
        self.last = records.last().cloned();
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
            while read_record(&mut reader, &mut record)? {
                f(&record)?;
            }
        }
        Ok(())
    }

    fn last(&self) -> Option<&[u8]> {
        self.last.as_deref()
    }
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

/// The in-memory twin of [`FileLog`], for tests.
#[derive(Default)]
pub struct MemLog {
    records: Vec<Vec<u8>>,
}

impl Log for MemLog {
    fn append(&mut self, _first_seq: u64, records: &[Vec<u8>]) -> io::Result<()> {
        self.records.extend_from_slice(records);
        Ok(())
    }

    fn replay(&self, _from_seq: u64, f: &mut dyn FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
        self.records.iter().try_for_each(|r| f(r))
    }

    fn last(&self) -> Option<&[u8]> {
        self.records.last().map(Vec::as_slice)
    }
}
