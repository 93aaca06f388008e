//! One Parapet per data directory.
//!
//! `serve` takes an exclusive lock on `DATA/lock` before it opens, repairs or creates any other
//! file there: a second server on the same directory must not touch a journal the first is
//! writing (cutting what it takes for a torn tail would truncate a live journal). The lock is
//! the kernel's (`flock`), so it is released when the process ends, however it ends; the file
//! holds the holder's pid for the message a second server prints.

use std::{
    fs::{File, OpenOptions},
    io::{Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
};

const LOCK_FILE: &str = "lock";

/// Held while Parapet runs on a data directory; dropping it lets the next one in.
#[derive(Debug)]
pub struct DataLock {
    /// Open for as long as the lock is held: closing it releases the lock.
    _file: File,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "data directory `{}` is in use by another Parapet ({}); stop it first, or give this one its own --data-dir",
        .dir.display(),
        match .pid { Some(pid) => format!("pid {pid}"), None => "pid unknown".to_owned() }
    )]
    Taken { dir: PathBuf, pid: Option<u32> },
    #[error("cannot lock data directory `{}`: {source}", .dir.display())]
    Io {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl DataLock {
    /// Takes the directory's lock, or says who holds it. Never waits.
    pub fn acquire(dir: &Path) -> Result<Self, LockError> {
        let io = |source| LockError::Io {
            dir: dir.to_path_buf(),
            source,
        };
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(dir.join(LOCK_FILE))
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(LockError::Taken {
                    dir: dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf()),
                    pid: holder(&mut file),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(Self { _file: file })
    }
}

/// Who holds the lock: the kernel's table of locks knows for certain (the pid the holder
/// wrote may not be there yet); the file's content otherwise.
fn holder(file: &mut File) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    if let (Ok(meta), Ok(locks)) = (file.metadata(), std::fs::read_to_string("/proc/locks")) {
        let inode = format!(":{}", meta.ino());
        // `1: FLOCK  ADVISORY  WRITE 14882 fe:00:10027041 0 EOF`
        let pid = locks.lines().find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let at = fields.iter().position(|f| *f == "FLOCK")?;
            let device_inode = fields.get(at + 4)?;
            device_inode
                .ends_with(&inode)
                .then(|| fields.get(at + 3)?.parse().ok())
                .flatten()
        });
        if pid.is_some() {
            return pid;
        }
    }
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid() {
        let dir = tempfile::tempdir().unwrap();
        let held = DataLock::acquire(dir.path()).unwrap();
        let err = DataLock::acquire(dir.path()).unwrap_err();
        let LockError::Taken { pid, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(*pid, Some(std::process::id()));
        assert!(err.to_string().contains(&dir.path().display().to_string()));
        drop(held);
        DataLock::acquire(dir.path()).unwrap();
    }
}
