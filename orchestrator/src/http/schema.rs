//! The API's messages as its descriptor set describes them: to read a query string into a
//! request message, and to describe the messages as JSON Schemas (2020-12) of their proto3
//! JSON mapping, with the `.proto`'s comments as descriptions: in the OpenAPI document, and
//! standing alone for the MCP tools.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::LazyLock,
};

use parapet_model::Invalid;
use prost::Message as _;
use prost_types::{
    DescriptorProto, EnumDescriptorProto, FieldDescriptorProto,
    field_descriptor_proto::{Label, Type},
};
use serde_json::{Map, Value, json};

/// Every message and enum of `parapet.v1`, by full name (`.parapet.v1.Intent`).
#[derive(Default)]
pub struct Schema {
    pub messages: BTreeMap<String, DescriptorProto>,
    pub enums: BTreeMap<String, EnumDescriptorProto>,
    /// The comment above a field in the `.proto`, by message and field name.
    comments: BTreeMap<(String, String), String>,
}

pub static SCHEMA: LazyLock<Schema> = LazyLock::new(|| {
    let mut schema = Schema::default();
    // compiled in by the proto crate's build, which decoded it before: it decodes
    let set = prost_types::FileDescriptorSet::decode(parapet_proto::v1::FILE_DESCRIPTOR_SET)
        .unwrap_or_default();
    for file in set.file {
        let scope = format!(".{}", file.package());
        // a location's path [4, m, 2, f] is field f of top-level message m
        for location in file.source_code_info.iter().flat_map(|i| &i.location) {
            if let [4, m, 2, f] = location.path[..] {
                let message = usize::try_from(m)
                    .ok()
                    .and_then(|m| file.message_type.get(m));
                let field =
                    message.and_then(|msg| usize::try_from(f).ok().and_then(|f| msg.field.get(f)));
                if let (Some(message), Some(field)) = (message, field) {
                    let text = location.leading_comments().trim();
                    if !text.is_empty() {
                        let key = (
                            format!("{scope}.{}", message.name()),
                            field.name().to_owned(),
                        );
                        schema
                            .comments
                            .insert(key, text.split_whitespace().collect::<Vec<_>>().join(" "));
                    }
                }
            }
        }
        for e in file.enum_type {
            schema.enums.insert(format!("{scope}.{}", e.name()), e);
        }
        for m in file.message_type {
            schema.add(&scope, m);
        }
    }
    schema
});

impl Schema {
    fn add(&mut self, scope: &str, message: DescriptorProto) {
        let name = format!("{scope}.{}", message.name());
        for e in &message.enum_type {
            self.enums.insert(format!("{name}.{}", e.name()), e.clone());
        }
        for nested in &message.nested_type {
            self.add(&name, nested.clone());
        }
        self.messages.insert(name, message);
    }

    /// The comment of `message`'s field `field` in the `.proto`.
    pub fn comment(&self, message: &str, field: &str) -> Option<&str> {
        self.comments
            .get(&(message.to_owned(), field.to_owned()))
            .map(String::as_str)
    }

    /// Whether a field is a map (its type a nested `…Entry` with the `map_entry` option).
    pub fn is_map(&self, field: &FieldDescriptorProto) -> bool {
        field.r#type() == Type::Message
            && self
                .messages
                .get(field.type_name())
                .and_then(|m| m.options.as_ref())
                .is_some_and(|o| o.map_entry())
    }

    /// The JSON Schema of `message` (`.parapet.v1.Intent`); the messages and enums it uses by
    /// `$ref` to `base` and their name (`#/components/schemas/`).
    pub fn message(&self, name: &str, base: &str) -> Value {
        let Some(m) = self.messages.get(name) else {
            return json!({});
        };
        let mut properties = Map::new();
        for f in &m.field {
            let mut s = self.field(f, base);
            if let Some(doc) = self.comment(name, f.name()) {
                s["description"] = doc.into();
            }
            properties.insert(f.json_name().to_owned(), s);
        }
        json!({ "type": "object", "properties": properties, "additionalProperties": false })
    }

    /// The JSON Schema of `message` standing alone: what it uses is under its `$defs`.
    pub fn standalone(&self, name: &str) -> Value {
        let mut root = self.message(name, DEFS);
        let mut defs = Map::new();
        for used in self.uses(name) {
            let schema = match self.enums.get(&used) {
                Some(e) => enumeration(e),
                None => self.message(&used, DEFS),
            };
            defs.insert(component(&used), schema);
        }
        if !defs.is_empty() {
            root["$defs"] = defs.into();
        }
        root
    }

    /// Every message and enum `name` uses, directly or through others, but for itself.
    fn uses(&self, name: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![name.to_owned()];
        while let Some(next) = todo.pop() {
            let Some(m) = self.messages.get(&next) else {
                continue;
            };
            for f in &m.field {
                let used = if self.is_map(f) {
                    self.messages
                        .get(f.type_name())
                        .and_then(|entry| entry.field.iter().find(|v| v.name() == "value"))
                        .map(|v| v.type_name())
                } else {
                    Some(f.type_name())
                };
                let Some(used) = used.filter(|u| !u.is_empty() && !u.starts_with(".google."))
                else {
                    continue;
                };
                if used != name && seen.insert(used.to_owned()) {
                    todo.push(used.to_owned());
                }
            }
        }
        seen
    }

    /// The JSON Schema of one field's value.
    pub fn field(&self, f: &FieldDescriptorProto, base: &str) -> Value {
        if self.is_map(f) {
            let value = self
                .messages
                .get(f.type_name())
                .and_then(|entry| entry.field.iter().find(|v| v.name() == "value"))
                .map_or(json!({}), |v| single(v, base));
            return json!({ "type": "object", "additionalProperties": value });
        }
        let one = single(f, base);
        if f.label() == Label::Repeated {
            json!({ "type": "array", "items": one })
        } else {
            one
        }
    }

    /// A query string (`detection=d&states=INTENT_STATE_ACTIVE&states=...&target.kind=ip`) as
    /// the proto3 JSON of `message`: a repeated field may repeat, a nested message's fields
    /// are named by dotted paths, a name is the field's (`page_size`) or its JSON name
    /// (`pageSize`). Values are checked when the JSON is decoded, as a body's would be.
    pub fn query(&self, message: &str, query: &str) -> Result<Value, Invalid> {
        let mut root = Map::new();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            self.set(message, &mut root, &key, &key, value.into_owned())?;
        }
        Ok(Value::Object(root))
    }

    fn set(
        &self,
        message: &str,
        object: &mut Map<String, Value>,
        path: &str,
        key: &str,
        value: String,
    ) -> Result<(), Invalid> {
        let (head, rest) = match key.split_once('.') {
            Some((h, r)) => (h, Some(r)),
            None => (key, None),
        };
        let unknown = || Invalid::new(path, "is not a parameter of this request");
        let field = self
            .messages
            .get(message)
            .and_then(|m| {
                m.field
                    .iter()
                    .find(|f| f.name() == head || f.json_name() == head)
            })
            .ok_or_else(unknown)?;
        let name = field.json_name().to_owned();
        if self.is_map(field) {
            return Err(Invalid::new(
                path,
                "a map cannot be given in a query string",
            ));
        }
        let scalar = |value: String| match field.r#type() {
            Type::Bool => match value.as_str() {
                "true" => Ok(Value::Bool(true)),
                "false" => Ok(Value::Bool(false)),
                _ => Err(Invalid::new(path, "must be `true` or `false`")),
            },
            Type::Int32 | Type::Uint32 | Type::Sint32 | Type::Fixed32 | Type::Sfixed32 => value
                .parse::<i64>()
                .map(Value::from)
                .map_err(|_| Invalid::new(path, format!("`{value}` is not an integer"))),
            Type::Double | Type::Float => value
                .parse::<f64>()
                .ok()
                .and_then(|f| serde_json::Number::from_f64(f).map(Value::Number))
                .ok_or_else(|| Invalid::new(path, format!("`{value}` is not a number"))),
            // 64-bit integers, strings, enums, timestamps, durations: strings in proto3 JSON
            _ => Ok(Value::String(value)),
        };
        let well_known = field.type_name().starts_with(".google.protobuf.");
        match (field.r#type(), rest) {
            (Type::Message, Some(rest)) if !well_known => {
                if field.label() == Label::Repeated {
                    return Err(Invalid::new(
                        path,
                        "a list of messages cannot be given in a query string",
                    ));
                }
                let inner = object
                    .entry(name)
                    .or_insert_with(|| Value::Object(Map::new()));
                let Value::Object(inner) = inner else {
                    return Err(unknown());
                };
                self.set(field.type_name(), inner, path, rest, value)
            }
            (Type::Message, None) if !well_known => Err(Invalid::new(
                path,
                "is a message: name its fields (`NAME.FIELD=...`)",
            )),
            (_, Some(_)) => Err(unknown()),
            (_, None) if field.label() == Label::Repeated => {
                let list = object
                    .entry(name)
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(list) = list {
                    list.push(scalar(value)?);
                }
                Ok(())
            }
            (_, None) => {
                if object.insert(name, scalar(value)?).is_some() {
                    return Err(Invalid::new(path, "is given twice"));
                }
                Ok(())
            }
        }
    }
}

/// `$defs`, where a standalone schema keeps what it uses.
pub const DEFS: &str = "#/$defs/";

/// A message's or enum's name as a schema's key: `parapet.v1.Intent`.
pub fn component(full_name: &str) -> String {
    full_name.trim_start_matches('.').to_owned()
}

/// A reference to a message's or enum's schema under `base`.
pub fn reference(base: &str, full_name: &str) -> Value {
    json!({ "$ref": format!("{base}{}", component(full_name)) })
}

/// An enum's schema: its value names, as proto3 JSON writes them.
pub fn enumeration(e: &EnumDescriptorProto) -> Value {
    let values: Vec<_> = e.value.iter().map(|v| v.name().to_owned()).collect();
    json!({ "type": "string", "enum": values })
}

fn single(f: &FieldDescriptorProto, base: &str) -> Value {
    match f.r#type() {
        Type::Double | Type::Float => json!({ "type": "number" }),
        Type::Int32 | Type::Sint32 | Type::Sfixed32 => {
            json!({ "type": "integer", "format": "int32" })
        }
        Type::Uint32 | Type::Fixed32 => {
            json!({ "type": "integer", "format": "uint32", "minimum": 0 })
        }
        // 64-bit integers are strings in proto3 JSON (numbers are accepted too)
        Type::Int64 | Type::Sint64 | Type::Sfixed64 | Type::Uint64 | Type::Fixed64 => {
            json!({ "type": ["string", "integer"], "pattern": "^-?[0-9]+$" })
        }
        Type::Bool => json!({ "type": "boolean" }),
        Type::String => json!({ "type": "string" }),
        Type::Bytes => json!({ "type": "string", "contentEncoding": "base64" }),
        Type::Enum => reference(base, f.type_name()),
        Type::Message | Type::Group => match f.type_name() {
            ".google.protobuf.Timestamp" => json!({ "type": "string", "format": "date-time" }),
            ".google.protobuf.Duration" => {
                json!({ "type": "string", "pattern": "^-?[0-9]+(\\.[0-9]{1,9})?s$",
                        "description": "seconds with an `s`, e.g. `3600s`" })
            }
            other => reference(base, other),
        },
    }
}
