//! Policy parsing under hostile text: never a panic; a refusal says where, or what.
//! `PROPTEST_CASES=N` for a longer run than CI's.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use parapet_policy::{EXAMPLE_POLICY, Policy};
use proptest::prelude::*;

/// The example policy with bytes replaced, removed or inserted: text close to a real policy,
/// where the parser's own checks (not only TOML's) are reached.
fn mutated() -> impl Strategy<Value = String> {
    let len = EXAMPLE_POLICY.len();
    prop::collection::vec((0..len, any::<u8>(), 0..3u8), 1..8).prop_map(move |edits| {
        let mut bytes = EXAMPLE_POLICY.as_bytes().to_vec();
        for (at, byte, how) in edits {
            let at = at.min(bytes.len().saturating_sub(1));
            match how {
                0 => bytes[at] = byte,
                1 => {
                    bytes.remove(at);
                }
                _ => bytes.insert(at, byte),
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

proptest! {
    #[test]
    fn any_text_is_parsed_or_refused_with_a_reason(text in "\\PC*") {
        if let Err(e) = Policy::from_toml(&text) {
            prop_assert!(!e.message.is_empty());
        }
    }

    #[test]
    fn an_edited_example_is_parsed_or_refused_with_a_reason(text in mutated()) {
        match Policy::from_toml(&text) {
            Ok(p) => prop_assert!(p.digest().starts_with("sha256:")),
            Err(e) => prop_assert!(!e.message.is_empty()),
        }
    }

    #[test]
    fn numbers_anywhere_are_checked(
        confidence in any::<f64>(),
        max in any::<i64>(),
        percent in any::<f64>(),
        prefix in any::<i64>(),
    ) {
        let text = format!(
            "[defaults]\nmin_prefix_v4 = {prefix}\n[[detections]]\nid = \"d\"\nmin_confidence = {confidence:?}\n[detections.actions]\nblock_ip = \"auto\"\n[[budgets]]\nname = \"b\"\nmax_active = {max}\nmax_active_percent = {percent:?}\n"
        );
        if let Ok(p) = Policy::from_toml(&text) {
            let d = &p.detections["d"];
            prop_assert!(d.min_confidence.is_none_or(|c| (0.0..=1.0).contains(&c.get())));
        }
    }
}
