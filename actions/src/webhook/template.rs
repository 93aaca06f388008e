//! `{{name}}` placeholders in a webhook's URL, headers and body, each value encoded for where
//! it lands: percent-encoded in a URL, as a JSON string in a body (the body is built as JSON,
//! never as text), as is in a header (where control characters are refused). This is value
//! substitution, not a template language: no logic, no filters, so a target id can only ever
//! be data.

use std::collections::BTreeMap;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;

/// Everything but RFC 3986's unreserved characters is encoded.
const URL_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The names a template may use, where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Place {
    Url,
    Header,
    Body,
}

/// A placeholder that cannot be where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Placeholder {
    #[error("`{0}` opens `{{{{` without closing it")]
    Unclosed(String),
    #[error("`{{{{secret}}}}` may only be used in headers")]
    SecretOutsideHeaders,
    #[error("`{{{{{0}}}}}` may only be used in rollback requests")]
    ResponseOutsideRollback(String),
    #[error("unknown placeholder `{{{{{0}}}}}`")]
    Unknown(String),
}

/// The placeholders of a text, in order.
pub(super) fn names(text: &str) -> Result<Vec<&str>, Placeholder> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| Placeholder::Unclosed(text.to_owned()))?;
        out.push(after[..end].trim());
        rest = &after[end + 2..];
    }
    Ok(out)
}

/// Whether `name` can be filled at `place`, in an execute or a rollback request.
pub(super) fn known(name: &str, place: Place, rollback: bool) -> Result<(), Placeholder> {
    let fixed = [
        "target.id",
        "target.kind",
        "intent_id",
        "step",
        "holder",
        "kind",
        "ttl_seconds",
    ];
    let ok = fixed.contains(&name)
        || name
            .strip_prefix("target.attributes.")
            .is_some_and(|k| !k.is_empty())
        || name.strip_prefix("params.").is_some_and(|k| !k.is_empty())
        || (name == "secret" && place == Place::Header)
        || (rollback
            && name
                .strip_prefix("response.")
                .is_some_and(|k| !k.is_empty()));
    if ok {
        Ok(())
    } else if name == "secret" {
        Err(Placeholder::SecretOutsideHeaders)
    } else if name.starts_with("response.") {
        Err(Placeholder::ResponseOutsideRollback(name.to_owned()))
    } else {
        Err(Placeholder::Unknown(name.to_owned()))
    }
}

/// Why a placeholder cannot be filled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Unfilled {
    /// The step has no value for it.
    Missing(String),
    /// In the URL, the value would not stay one path segment (`..`, a `/`, an encoded one):
    /// the credentialed request could reach another path.
    NotOneSegment(String, String),
    /// The template itself is malformed.
    Template(String),
}

impl Unfilled {
    /// The placeholder at fault, if one is.
    pub(super) fn name(&self) -> Option<&str> {
        match self {
            Self::Missing(name) | Self::NotOneSegment(name, _) => Some(name),
            Self::Template(_) => None,
        }
    }
}

impl std::fmt::Display for Unfilled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing(name) => write!(f, "`{{{{{name}}}}}` has no value for this step"),
            Self::NotOneSegment(name, value) => write!(
                f,
                "`{{{{{name}}}}}` = `{}` cannot go into the URL: a value there must be one path segment (no `.` or `..`, no `/`, `\\`, `?`, `#` or `%`-escape)",
                parapet_model::intent::clip(value)
            ),
            Self::Template(message) => f.write_str(message),
        }
    }
}

/// Whether a value stays one path segment once percent-encoded: `.` and `..` are left as is
/// by the encoding and move up the path; the others are refused outright so that no server
/// that decodes twice, or treats `\\` as `/`, is led elsewhere either.
fn one_segment(value: &str) -> bool {
    let escape = value
        .as_bytes()
        .windows(3)
        .any(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit());
    !(value.is_empty()
        || value == "."
        || value == ".."
        || escape
        || value.contains(['/', '\\', '?', '#']))
}

/// Fills a text's placeholders from `vars`, or says which cannot be filled.
pub(super) fn fill(text: &str, vars: &Vars, place: Place) -> Result<String, Unfilled> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err(Unfilled::Template(format!(
                "`{text}` opens `{{{{` without closing it"
            )));
        };
        let name = after[..end].trim();
        let value = vars
            .get(name)
            .ok_or_else(|| Unfilled::Missing(name.to_owned()))?;
        match place {
            Place::Url if !one_segment(&value) => {
                return Err(Unfilled::NotOneSegment(name.to_owned(), value));
            }
            Place::Url => out.extend(utf8_percent_encode(&value, URL_VALUE)),
            Place::Header | Place::Body => out.push_str(&value),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Fills every string of a JSON body.
pub(super) fn fill_json(body: &Value, vars: &Vars) -> Result<Value, Unfilled> {
    Ok(match body {
        Value::String(s) => Value::String(fill(s, vars, Place::Body)?),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| fill_json(v, vars))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), fill_json(v, vars)?)))
                .collect::<Result<_, Unfilled>>()?,
        ),
        other => other.clone(),
    })
}

/// Every string of a JSON body, for checking its placeholders.
pub(super) fn strings(body: &Value) -> Vec<&str> {
    match body {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => items.iter().flat_map(strings).collect(),
        Value::Object(map) => map.values().flat_map(strings).collect(),
        _ => Vec::new(),
    }
}

/// The values placeholders take.
#[derive(Debug, Default)]
pub(super) struct Vars {
    pub plain: BTreeMap<String, String>,
    /// The execute request's answer, for `{{response.a.b}}`.
    pub response: Value,
    pub secret: Option<String>,
}

impl Vars {
    fn get(&self, name: &str) -> Option<String> {
        if name == "secret" {
            return self.secret.clone();
        }
        if let Some(path) = name.strip_prefix("response.") {
            let mut v = &self.response;
            for part in path.split('.') {
                v = match v {
                    Value::Array(items) => items.get(part.parse::<usize>().ok()?)?,
                    _ => v.get(part)?,
                };
            }
            return match v {
                Value::String(s) => Some(s.clone()),
                Value::Null => None,
                other => Some(other.to_string()),
            };
        }
        self.plain.get(name).cloned()
    }
}
