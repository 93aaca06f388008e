//! Generated protobuf and gRPC code for Parapet's API, package `parapet.v1`.
//!
//! This crate holds generated code, and the codec it uses ([`codec`]). Domain types live in `parapet-model`; the mapping between
//! the two sits in the orchestrator's `pb` module.

#![allow(
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    clippy::expect_used
)]

pub mod codec;

/// The well-known types (`Timestamp`, `Duration`) the messages use, with their JSON mapping.
pub use pbjson_types as wkt;

pub mod v1 {
    tonic::include_proto!("parapet.v1");
    include!(concat!(env!("OUT_DIR"), "/parapet.v1.serde.rs"));

    /// Encoded `FileDescriptorSet` of the API, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/parapet_descriptor.bin"));
}

/// `Timestamp` to and from the system's time, which `pbjson_types` leaves out.
pub mod time {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use pbjson_types::Timestamp;

    /// `t` as a timestamp; before 1970, the whole seconds below zero and nanos above.
    pub fn timestamp(t: SystemTime) -> Timestamp {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp {
                seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                nanos: d.subsec_nanos() as i32,
            },
            Err(e) => {
                let d = e.duration();
                let (mut seconds, mut nanos) = (-(d.as_secs() as i64), -(d.subsec_nanos() as i32));
                if nanos < 0 {
                    seconds -= 1;
                    nanos += 1_000_000_000;
                }
                Timestamp { seconds, nanos }
            }
        }
    }

    /// The time a timestamp names; `None` when it is not a valid one (nanos outside a second)
    /// or not representable here.
    pub fn system_time(t: &Timestamp) -> Option<SystemTime> {
        let nanos = u32::try_from(t.nanos).ok().filter(|n| *n < 1_000_000_000)?;
        match u64::try_from(t.seconds) {
            Ok(s) => UNIX_EPOCH.checked_add(Duration::new(s, nanos)),
            Err(_) => UNIX_EPOCH
                .checked_sub(Duration::from_secs(t.seconds.unsigned_abs()))?
                .checked_add(Duration::from_nanos(nanos.into())),
        }
    }
}
