//! The in-memory twin of [`FileLog`](super::FileLog), for tests.

use std::{io, sync::Arc};

use super::{Anchor, Failure, Hash, Log, LogReader, Stored, record::HEADER};

/// One segment in memory, shared with its readers.
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
        _last_hash: Hash,
        meanwhile: &mut dyn FnMut() -> io::Result<()>,
    ) -> Result<(), Failure> {
        self.records.write().extend_from_slice(records);
        self.last = records.last().cloned();
        meanwhile().map_err(Failure::Unknown)
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

    fn head(&self) -> io::Result<Option<Anchor>> {
        Ok(None)
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
