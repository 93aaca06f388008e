//! The rate limits' cells answer as governor's GCRA does, for any limit and any sequence of
//! requests: the same requests allowed, the same waits told.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    num::NonZeroU32,
    time::{Duration, SystemTime},
};

use governor::{
    Quota, RateLimiter,
    clock::{Clock as _, FakeRelativeClock},
};
use parapet_model::{Confidence, Detection, IntentId, IntentRequest, Severity, Step, Target};
use parapet_policy::{
    rate::RateCells,
    rules::{RateKey, RateLimit, Span},
};
use proptest::prelude::*;

fn intent() -> parapet_model::Intent {
    let step = Step::new(
        "block_ip".parse().unwrap(),
        Target::new("ip".into(), "192.0.2.1".into(), Default::default()).unwrap(),
        Default::default(),
    )
    .unwrap();
    let detection = Detection::new(
        "d".into(),
        Severity::High,
        Confidence::try_from(0.9).unwrap(),
        String::new(),
    )
    .unwrap();
    IntentRequest::new(
        "k".into(),
        "s".into(),
        detection,
        vec![step],
        None,
        String::new(),
    )
    .unwrap()
    .into_intent(IntentId::generate(), SystemTime::UNIX_EPOCH)
}

proptest! {
    #[test]
    fn cells_answer_as_governor_does(
        max in 1u32..20,
        per_ms in 1u64..120_000,
        burst in prop::option::of(1u32..20),
        gaps in prop::collection::vec(0u64..5_000, 1..200),
    ) {
        let rule = RateLimit {
            name: "r".into(),
            key: RateKey::Source,
            max: NonZeroU32::new(max).unwrap(),
            per: Span(Duration::from_millis(per_ms), format!("{per_ms}ms")),
            burst: burst.and_then(NonZeroU32::new),
        };
        let quota = Quota::with_period(rule.per.0 / max)
            .unwrap_or_else(|| Quota::per_second(rule.max))
            .allow_burst(rule.burst.unwrap_or(rule.max));
        let clock = FakeRelativeClock::default();
        let governor = RateLimiter::direct_with_clock(quota, clock.clone());
        let mut cells = RateCells::default();
        let intent = intent();
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut elapsed = Duration::ZERO;
        for gap in gaps {
            clock.advance(Duration::from_millis(gap));
            elapsed += Duration::from_millis(gap);
            let expected = governor.check().map_err(|n| n.wait_time_from(clock.now()));
            let check = cells.take(std::slice::from_ref(&rule), &intent, start + elapsed);
            prop_assert_eq!(check.denied, expected.is_err());
            prop_assert_eq!(check.retry_after, expected.err());
        }
    }
}
