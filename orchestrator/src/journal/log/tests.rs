use std::path::Path;

use proptest::prelude::*;

use super::*;

/// A record shaped as the journal's: its sequence number first, the previous hash last.
fn entry(seq: u64, prev: Hash) -> Vec<u8> {
    postcard::to_stdvec(&(
        seq,
        format!("entry {seq} {}", "x".repeat((seq % 7) as usize)),
        prev,
    ))
    .unwrap()
}

/// Writes `batches` of records (sizes given) with the small segments `segment_bytes` makes;
/// returns every record written.
fn write(dir: &Path, segment_bytes: u64, batches: &[usize]) -> Vec<Vec<u8>> {
    let mut log = FileLog::with_segment_bytes(dir, segment_bytes).unwrap();
    let (mut seq, mut prev, mut all) = (1u64, [0u8; 32], Vec::new());
    for &n in batches {
        let first = seq;
        let mut records = Vec::new();
        for _ in 0..n {
            let r = entry(seq, prev);
            prev = hash(&r);
            records.push(r);
            seq += 1;
        }
        log.append(first, &records, prev, &mut || Ok(())).unwrap();
        all.extend(records);
    }
    all
}

fn segment(dir: &Path, first: u64) -> PathBuf {
    segment_path(dir, first)
}

/// Where each record starts in a segment's bytes.
fn offsets(bytes: &[u8]) -> Vec<usize> {
    let (mut at, mut out) = (0, Vec::new());
    while at + record::HEADER <= bytes.len() {
        out.push(at);
        at += record::HEADER + u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    }
    out
}

fn damage(dir: &Path) -> Damage {
    let err = FileLog::open(dir).err().expect("the log opened");
    let kind = err.kind();
    match err.into_inner().map(|e| e.downcast::<Damage>()) {
        Some(Ok(d)) => *d,
        other => panic!("not damage ({kind:?}): {other:?}"),
    }
}

fn records_kept(dir: &Path) -> Vec<Vec<u8>> {
    let log = FileLog::open(dir).unwrap();
    let mut kept = Vec::new();
    log.replay(1, &mut |r| {
        kept.push(r.to_vec());
        Ok(())
    })
    .unwrap();
    kept
}

#[test]
fn a_torn_write_after_the_acknowledged_entry_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let written = write(dir.path(), SEGMENT_BYTES, &[2, 3]);
    let path = segment(dir.path(), 1);
    let good = fs::read(&path).unwrap();
    let head = fs::read(dir.path().join(HEAD_FILE)).unwrap();
    // a batch a crash cut short: its records half on disk, its head mark never written
    let torn = {
        let mut buf = Vec::new();
        record::frame(&mut buf, &entry(6, hash(&written[4]))).unwrap();
        record::frame(&mut buf, &entry(7, [1; 32])).unwrap();
        buf.truncate(buf.len() - 5);
        buf
    };
    fs::write(&path, [&good[..], &torn[..]].concat()).unwrap();
    // the first, whole record of the torn batch is kept; the half one goes
    let kept = records_kept(dir.path());
    assert_eq!(kept[..5], written[..]);
    assert_eq!(kept.len(), 6);
    // garbage (zeros, as a file extended but never written reads) is a torn write too
    fs::write(&path, [&good[..], &[0u8; 300][..]].concat()).unwrap();
    fs::write(dir.path().join(HEAD_FILE), &head).unwrap();
    assert_eq!(records_kept(dir.path()), written);
    assert_eq!(fs::read(&path).unwrap(), good);
}

#[test]
fn a_flipped_length_in_an_acknowledged_record_stops_the_start() {
    for victim in [1, 4] {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), SEGMENT_BYTES, &[2, 3]);
        let path = segment(dir.path(), 1);
        let mut bytes = fs::read(&path).unwrap();
        let at = offsets(&bytes)[victim];
        bytes[at + 2] ^= 0x01;
        fs::write(&path, &bytes).unwrap();
        let d = damage(dir.path());
        assert_eq!(
            (d.segment.as_path(), d.offset, d.seq, d.acknowledged),
            (path.as_path(), at as u64, victim as u64 + 1, Some(5)),
            "{d}"
        );
        // nothing was cut
        assert_eq!(fs::read(&path).unwrap(), bytes);
    }
}

#[test]
fn a_cut_off_end_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), SEGMENT_BYTES, &[2, 3]);
    let path = segment(dir.path(), 1);
    let bytes = fs::read(&path).unwrap();
    let at = offsets(&bytes)[3];
    fs::write(&path, &bytes[..at]).unwrap();
    let d = damage(dir.path());
    assert_eq!((d.seq, d.acknowledged), (4, Some(5)));
    assert!(d.to_string().contains("entries 4 to 5 are missing"), "{d}");
}

#[test]
fn an_acknowledged_entry_rewritten_with_a_good_checksum_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let written = write(dir.path(), SEGMENT_BYTES, &[2, 3]);
    let path = segment(dir.path(), 1);
    let bytes = fs::read(&path).unwrap();
    let at = offsets(&bytes)[4];
    let mut forged = bytes[..at].to_vec();
    let mut other = written[4].clone();
    other[3] ^= 0x20;
    record::frame(&mut forged, &other).unwrap();
    fs::write(&path, &forged).unwrap();
    let d = damage(dir.path());
    assert_eq!(d.seq, 5);
    assert!(
        d.to_string()
            .contains("differs from the one that was acknowledged")
    );
}

#[test]
fn older_segments_are_checked_too() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 200, &[3; 10]);
    let segments = list_segments(dir.path()).unwrap();
    assert!(segments.len() > 3, "{segments:?}");
    let old = segment(dir.path(), segments[1]);
    let mut bytes = fs::read(&old).unwrap();
    let at = offsets(&bytes)[1];
    bytes[at + record::HEADER + 2] ^= 0x40;
    fs::write(&old, &bytes).unwrap();
    let d = damage(dir.path());
    assert_eq!(
        (d.segment, d.offset, d.seq),
        (old, at as u64, segments[1] + 1)
    );
}

#[test]
fn a_segment_removed_from_the_middle_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), 200, &[3; 10]);
    let segments = list_segments(dir.path()).unwrap();
    fs::remove_file(segment(dir.path(), segments[1])).unwrap();
    let d = damage(dir.path());
    assert_eq!(d.seq, segments[1]);
    assert!(d.to_string().contains("are missing"), "{d}");
}

#[test]
fn without_a_head_mark_only_a_record_at_the_very_end_may_be_cut() {
    // a journal written before head marks existed
    let dir = tempfile::tempdir().unwrap();
    let written = write(dir.path(), SEGMENT_BYTES, &[2, 3]);
    fs::remove_file(dir.path().join(HEAD_FILE)).unwrap();
    let path = segment(dir.path(), 1);
    let good = fs::read(&path).unwrap();
    let mut half = Vec::new();
    record::frame(&mut half, &entry(6, hash(&written[4]))).unwrap();
    half.truncate(half.len() / 2);
    fs::write(&path, [&good[..], &half[..]].concat()).unwrap();
    assert_eq!(records_kept(dir.path()), written);
    assert_eq!(fs::read(&path).unwrap(), good);
    // the head mark is written again, so the next start checks against it
    assert_eq!(
        record::read_point(&dir.path().join(HEAD_FILE)).unwrap(),
        Some(Anchor {
            seq: 5,
            hash: hash(&written[4])
        })
    );
    fs::remove_file(dir.path().join(HEAD_FILE)).unwrap();
    let mut bad = good.clone();
    bad[12] ^= 0xff;
    fs::write(&path, [&bad[..], &good[..]].concat()).unwrap();
    let d = damage(dir.path());
    assert_eq!((d.offset, d.seq, d.acknowledged), (0, 1, None));
}

#[test]
fn a_head_mark_older_than_the_log_keeps_everything() {
    // after a power cut the head mark (not synced per batch) may lag the synced log
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), SEGMENT_BYTES, &[2]);
    let older = fs::read(dir.path().join(HEAD_FILE)).unwrap();
    let all = {
        let mut log = FileLog::open(dir.path()).unwrap();
        let prev = hash(log.last().unwrap());
        let r = entry(3, prev);
        log.append(3, std::slice::from_ref(&r), hash(&r), &mut || Ok(()))
            .unwrap();
        records_of(&log)
    };
    fs::write(dir.path().join(HEAD_FILE), older).unwrap();
    assert_eq!(records_kept(dir.path()), all);
}

fn records_of(log: &FileLog) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    log.replay(1, &mut |r| {
        out.push(r.to_vec());
        Ok(())
    })
    .unwrap();
    out
}

/// One way of damaging the stored log.
#[derive(Debug, Clone)]
enum Harm {
    Flip {
        segment: usize,
        at: usize,
        bit: u8,
    },
    Truncate {
        segment: usize,
        keep: usize,
    },
    Insert {
        segment: usize,
        at: usize,
        bytes: Vec<u8>,
    },
    Remove {
        segment: usize,
    },
}

fn harm() -> impl Strategy<Value = Harm> {
    prop_oneof![
        (any::<usize>(), any::<usize>(), 0u8..8).prop_map(|(segment, at, bit)| Harm::Flip {
            segment,
            at,
            bit
        }),
        (any::<usize>(), any::<usize>())
            .prop_map(|(segment, keep)| Harm::Truncate { segment, keep }),
        (
            any::<usize>(),
            any::<usize>(),
            prop::collection::vec(any::<u8>(), 1..40)
        )
            .prop_map(|(segment, at, bytes)| Harm::Insert { segment, at, bytes }),
        any::<usize>().prop_map(|segment| Harm::Remove { segment }),
    ]
}

proptest! {
    /// Whatever is done to the stored segments, opening the log never panics, and never
    /// loses an acknowledged record without saying so: it either keeps every one of them as
    /// written, or refuses with where the damage is.
    #[test]
    fn damage_is_reported_never_cut_silently(
        batches in prop::collection::vec(1usize..4, 1..12),
        harms in prop::collection::vec(harm(), 1..4),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let written = write(dir.path(), 256, &batches);
        for h in harms {
            let segments = list_segments(dir.path()).unwrap();
            if segments.is_empty() {
                break;
            }
            let pick = |i: usize| segment(dir.path(), segments[i % segments.len()]);
            match h {
                Harm::Flip { segment, at, bit } => {
                    let path = pick(segment);
                    let mut bytes = fs::read(&path).unwrap();
                    if !bytes.is_empty() {
                        let at = at % bytes.len();
                        bytes[at] ^= 1 << bit;
                        fs::write(&path, bytes).unwrap();
                    }
                }
                Harm::Truncate { segment, keep } => {
                    let path = pick(segment);
                    let bytes = fs::read(&path).unwrap();
                    fs::write(&path, &bytes[..keep % (bytes.len() + 1)]).unwrap();
                }
                Harm::Insert { segment, at, bytes: extra } => {
                    let path = pick(segment);
                    let bytes = fs::read(&path).unwrap();
                    let at = at % (bytes.len() + 1);
                    fs::write(&path, [&bytes[..at], &extra[..], &bytes[at..]].concat()).unwrap();
                }
                Harm::Remove { segment } => fs::remove_file(pick(segment)).unwrap(),
            }
        }
        match FileLog::open(dir.path()) {
            Ok(log) => {
                let mut kept = Vec::new();
                let replayed = log.replay(1, &mut |r| {
                    kept.push(r.to_vec());
                    Ok(())
                });
                prop_assert!(replayed.is_ok(), "{replayed:?}");
                prop_assert!(kept.len() >= written.len(), "{} of {} kept", kept.len(), written.len());
                prop_assert_eq!(&kept[..written.len()], &written[..]);
            }
            Err(e) => {
                let text = e.to_string();
                prop_assert!(
                    e.get_ref().is_some_and(|inner| inner.is::<Damage>())
                        || text.contains("damaged"),
                    "{text}"
                );
            }
        }
    }
}
