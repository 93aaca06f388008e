//! Serde forms for times and durations: RFC 3339 and `4h 30m` in human-readable formats (the JSON
//! an auditor reads), compact numbers in binary ones (the journal).

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error};

pub mod time {
    use super::*;

    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            humantime::format_rfc3339_millis(*t)
                .to_string()
                .serialize(s)
        } else {
            t.serialize(s)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        if d.is_human_readable() {
            let text = String::deserialize(d)?;
            humantime::parse_rfc3339_weak(&text).map_err(D::Error::custom)
        } else {
            SystemTime::deserialize(d)
        }
    }
}

pub mod opt_time {
    use super::*;

    #[derive(Serialize, Deserialize)]
    struct Wrap(#[serde(with = "super::time")] SystemTime);

    pub fn serialize<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
        t.map(Wrap).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SystemTime>, D::Error> {
        Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
    }
}

pub mod duration {
    use super::*;

    pub fn serialize<S: Serializer>(t: &Duration, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            humantime::format_duration(*t).to_string().serialize(s)
        } else {
            t.serialize(s)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        if d.is_human_readable() {
            let text = String::deserialize(d)?;
            humantime::parse_duration(&text).map_err(D::Error::custom)
        } else {
            Duration::deserialize(d)
        }
    }
}

pub mod opt_duration {
    use super::*;

    #[derive(Serialize, Deserialize)]
    struct Wrap(#[serde(with = "super::duration")] Duration);

    pub fn serialize<S: Serializer>(t: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        t.map(Wrap).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
    }
}
