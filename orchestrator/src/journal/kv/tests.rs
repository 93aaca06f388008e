//! The sled store and its in-memory twin must answer every question alike.

use proptest::prelude::*;

use super::*;

#[derive(Debug, Clone)]
enum Op {
    Write(Vec<(Vec<u8>, Option<Vec<u8>>)>),
    Get(Vec<u8>),
    Scan(Vec<u8>, Option<Vec<u8>>, bool),
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    // few distinct bytes, so prefixes and collisions are common; 0xff exercises prefix_end
    prop::collection::vec(prop::sample::select(vec![0u8, 1, b'a', 0xfe, 0xff]), 0..4)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        prop::collection::vec((key(), prop::option::of(key())), 1..4).prop_map(Op::Write),
        key().prop_map(Op::Get),
        (key(), prop::option::of(key()), any::<bool>()).prop_map(|(p, s, r)| Op::Scan(p, s, r)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn sled_behaves_like_its_twin(ops in prop::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let sled = SledKv::open(dir.path()).unwrap();
        let mem = MemKv::default();
        for op in ops {
            match op {
                Op::Write(batch) => {
                    sled.write(batch.clone()).unwrap();
                    mem.write(batch).unwrap();
                }
                Op::Get(k) => prop_assert_eq!(sled.get(&k).unwrap(), mem.get(&k).unwrap()),
                Op::Scan(prefix, start, reverse) => {
                    // a start outside the prefix is a caller's mistake; keep to valid ones
                    let start = start.map(|s| [prefix.clone(), s].concat());
                    let a: Vec<_> = sled.scan(&prefix, start.as_deref(), reverse).map(Result::unwrap).collect();
                    let b: Vec<_> = mem.scan(&prefix, start.as_deref(), reverse).map(Result::unwrap).collect();
                    prop_assert_eq!(a, b);
                }
            }
        }
    }
}
