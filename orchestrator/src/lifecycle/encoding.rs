//! How an [`Event`] is encoded: as one enum whose variants are the intent events' (indices 0 to
//! 16) and then the system events' (17 to 25), named as each event type names them — the
//! encoding the journal has always had, so every journal written before the two types were
//! split reads back unchanged. Each half is derived by serde; only the system events' variant
//! index is moved, on the way out and on the way back.
//!
//! A new system event goes at the end of [`SystemEvent`]. A new intent event cannot go at the
//! end of [`IntentEvent`] (its index would be a system event's): it needs an index here past
//! every system event.

use std::fmt;

use serde::{
    Deserialize, Deserializer, Serialize, Serializer,
    de::{self, DeserializeSeed, EnumAccess, IntoDeserializer, VariantAccess, Visitor},
    ser::{self, Impossible},
};

use super::{Event, IntentEvent, SystemEvent};

/// The system events' first variant index: the number of intent events.
const SYSTEM_FROM: u32 = 17;

/// Every variant's name, intent events first, for the formats that tag by name.
const VARIANTS: [&str; 26] = [
    "received",
    "decided",
    "step_started",
    "step_succeeded",
    "step_failed",
    "activated",
    "ttl_extended",
    "rollback_started",
    "step_rolled_back",
    "step_rollback_failed",
    "rolled_back",
    "failed",
    "rollback_failed",
    "approved",
    "escalated",
    "rejected",
    "judged",
    "kill_switch",
    "policy_loaded",
    "bulk_rollback_started",
    "bulk_rollback_finished",
    "detection_demoted",
    "policy_refused",
    "journal_compacted",
    "access_denied",
    "tokens_changed",
];

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Intent(e) => e.serialize(serializer),
            Self::System(e) => e.serialize(Shifted(serializer)),
        }
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_enum("Event", &VARIANTS, EventVisitor)
    }
}

/// A serializer that takes a system event's variant to its place after the intent events'.
struct Shifted<S>(S);

fn only_variants<E: ser::Error>() -> E {
    E::custom("a system event serializes as an enum variant")
}

macro_rules! refuse {
    ($($method:ident($($arg:ty),*) -> $ret:ty;)*) => {
        $(
            fn $method(self, $(_: $arg),*) -> Result<$ret, Self::Error> {
                Err(only_variants())
            }
        )*
    };
}

impl<S: Serializer> Serializer for Shifted<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = Impossible<S::Ok, S::Error>;
    type SerializeTuple = Impossible<S::Ok, S::Error>;
    type SerializeTupleStruct = Impossible<S::Ok, S::Error>;
    type SerializeTupleVariant = S::SerializeTupleVariant;
    type SerializeMap = Impossible<S::Ok, S::Error>;
    type SerializeStruct = Impossible<S::Ok, S::Error>;
    type SerializeStructVariant = S::SerializeStructVariant;

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        index: u32,
        variant: &'static str,
    ) -> Result<S::Ok, S::Error> {
        self.0
            .serialize_unit_variant("Event", SYSTEM_FROM + index, variant)
    }

    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        self.0
            .serialize_newtype_variant("Event", SYSTEM_FROM + index, variant, value)
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<S::SerializeTupleVariant, S::Error> {
        self.0
            .serialize_tuple_variant("Event", SYSTEM_FROM + index, variant, len)
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<S::SerializeStructVariant, S::Error> {
        self.0
            .serialize_struct_variant("Event", SYSTEM_FROM + index, variant, len)
    }

    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        _value: &T,
    ) -> Result<S::Ok, S::Error> {
        Err(only_variants())
    }

    fn serialize_some<T: ?Sized + Serialize>(self, _value: &T) -> Result<S::Ok, S::Error> {
        Err(only_variants())
    }

    refuse! {
        serialize_bool(bool) -> S::Ok;
        serialize_i8(i8) -> S::Ok;
        serialize_i16(i16) -> S::Ok;
        serialize_i32(i32) -> S::Ok;
        serialize_i64(i64) -> S::Ok;
        serialize_u8(u8) -> S::Ok;
        serialize_u16(u16) -> S::Ok;
        serialize_u32(u32) -> S::Ok;
        serialize_u64(u64) -> S::Ok;
        serialize_f32(f32) -> S::Ok;
        serialize_f64(f64) -> S::Ok;
        serialize_char(char) -> S::Ok;
        serialize_str(&str) -> S::Ok;
        serialize_bytes(&[u8]) -> S::Ok;
        serialize_none() -> S::Ok;
        serialize_unit() -> S::Ok;
        serialize_unit_struct(&'static str) -> S::Ok;
        serialize_seq(Option<usize>) -> Self::SerializeSeq;
        serialize_tuple(usize) -> Self::SerializeTuple;
        serialize_tuple_struct(&'static str, usize) -> Self::SerializeTupleStruct;
        serialize_map(Option<usize>) -> Self::SerializeMap;
        serialize_struct(&'static str, usize) -> Self::SerializeStruct;
    }
}

/// A variant as the input names it: by index (compact formats) or by name.
enum Tag {
    Index(u32),
    Name(String),
}

impl<'de> Deserialize<'de> for Tag {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TagVisitor;

        impl Visitor<'_> for TagVisitor {
            type Value = Tag;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an event's variant index or name")
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Tag, E> {
                u32::try_from(v)
                    .map(Tag::Index)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Tag, E> {
                Ok(Tag::Name(v.to_owned()))
            }
        }

        deserializer.deserialize_identifier(TagVisitor)
    }
}

struct EventVisitor;

impl<'de> Visitor<'de> for EventVisitor {
    type Value = Event;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a journal event")
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Event, A::Error> {
        let (tag, variant) = data.variant::<Tag>()?;
        let system = match &tag {
            Tag::Index(i) => *i >= SYSTEM_FROM,
            Tag::Name(name) => VARIANTS[SYSTEM_FROM as usize..].contains(&name.as_str()),
        };
        if system {
            let tag = match tag {
                Tag::Index(i) => Tag::Index(i - SYSTEM_FROM),
                name => name,
            };
            SystemEvent::deserialize(Tagged { tag, variant }).map(Event::System)
        } else {
            IntentEvent::deserialize(Tagged { tag, variant }).map(Event::Intent)
        }
    }
}

/// One half's variant, handed to that half's derived deserializer: its tag, and the input's
/// access to the variant's contents.
struct Tagged<A> {
    tag: Tag,
    variant: A,
}

impl<'de, A: VariantAccess<'de>> Deserializer<'de> for Tagged<A> {
    type Error = A::Error;

    fn deserialize_any<W: Visitor<'de>>(self, visitor: W) -> Result<W::Value, A::Error> {
        visitor.visit_enum(self)
    }

    fn deserialize_enum<W: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: W,
    ) -> Result<W::Value, A::Error> {
        visitor.visit_enum(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct identifier
        ignored_any
    }
}

impl<'de, A: VariantAccess<'de>> EnumAccess<'de> for Tagged<A> {
    type Error = A::Error;
    type Variant = A;

    fn variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<(T::Value, A), A::Error> {
        let value = match self.tag {
            Tag::Index(i) => {
                seed.deserialize(IntoDeserializer::<A::Error>::into_deserializer(i))?
            }
            Tag::Name(name) => {
                seed.deserialize(IntoDeserializer::<A::Error>::into_deserializer(name))?
            }
        };
        Ok((value, self.variant))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::{RollbackCause, Verdict};

    #[test]
    fn events_keep_the_journals_encoding() {
        // bytes as the journal has always written them: variant index, then the fields
        let engaged = Event::System(SystemEvent::KillSwitch {
            kind: None,
            engaged: true,
            reason: "r".into(),
        });
        assert_eq!(postcard::to_stdvec(&engaged).unwrap(), [17, 0, 1, 1, b'r']);
        let denied = Event::System(SystemEvent::AccessDenied {
            identity: String::new(),
            peer: String::new(),
            method: String::new(),
            code: String::new(),
            reason: String::new(),
        });
        assert_eq!(postcard::to_stdvec(&denied).unwrap(), [24, 0, 0, 0, 0, 0]);
        assert_eq!(
            postcard::to_stdvec(&Event::Intent(IntentEvent::StepStarted { step: 3 })).unwrap(),
            [2, 3]
        );
        assert_eq!(
            postcard::to_stdvec(&Event::Intent(IntentEvent::RolledBack)).unwrap(),
            [10]
        );
        let judged = Event::Intent(IntentEvent::Judged {
            by: "a".into(),
            verdict: Verdict::TruePositive,
            note: String::new(),
            suppress_until: None,
        });
        assert_eq!(postcard::to_stdvec(&judged).unwrap()[0], 16);
    }

    #[test]
    fn every_event_reads_back_as_itself_compact_and_as_json() {
        let events = [
            Event::Intent(IntentEvent::StepStarted { step: 1 }),
            Event::Intent(IntentEvent::RolledBack),
            Event::Intent(IntentEvent::RollbackStarted {
                cause: RollbackCause::Ttl,
                reason: "ttl".into(),
            }),
            Event::System(SystemEvent::KillSwitch {
                kind: Some("block_ip".parse().unwrap()),
                engaged: false,
                reason: "fixed".into(),
            }),
            Event::System(SystemEvent::DetectionDemoted {
                rule: "d".into(),
                demoted: true,
                reason: "fp".into(),
            }),
            Event::System(SystemEvent::JournalCompacted {
                through: 9,
                anchor: "ab".into(),
                entries: 9,
                intents: 2,
            }),
            Event::System(SystemEvent::TokensChanged {
                added: vec!["soar (operator) sha256:0a1b2c3d".into()],
                removed: vec![],
                changed: vec![],
            }),
        ];
        for event in events {
            let bytes = postcard::to_stdvec(&event).unwrap();
            assert_eq!(postcard::from_bytes::<Event>(&bytes).unwrap(), event);
            let json = serde_json::to_value(&event).unwrap();
            // externally tagged: a unit variant by its name, any other as `{name: fields}`
            let tagged = json.is_string() || json.as_object().is_some_and(|o| o.len() == 1);
            assert!(tagged, "{json}");
            assert_eq!(serde_json::from_value::<Event>(json).unwrap(), event);
        }
        assert_eq!(
            serde_json::to_value(Event::Intent(IntentEvent::RolledBack)).unwrap(),
            serde_json::json!("rolled_back")
        );
        assert!(postcard::from_bytes::<Event>(&[26]).is_err());
    }
}
