//! Credentials an adapter holds, and blotting them out of anything that could be kept.
//!
//! A remote system may echo a credential back: in an error page, in a JSON answer, as the
//! `Authorization` header it received. What Parapet keeps of an answer (a rollback handle, an
//! error that goes into the journal and the logs) passes through [`Secrets::redact`] first,
//! before anything is cut short (a cut could leave most of a secret behind a prefix of it that
//! no longer matches). A secret is found in any letter case, percent-encoded (some or all of
//! its bytes, in either case of hex), and base64-encoded (standard and URL-safe, at any
//! alignment, as inside a Basic credential).

use std::sync::Arc;

use base64::Engine as _;
use parking_lot::RwLock;
use serde_json::Value;

/// What stands where a secret was.
pub const REDACTED: &str = "[redacted]";

/// Secrets shorter than this are not looked for: they would match ordinary text.
const SHORTEST: usize = 4;

/// Tokens fetched at run time kept besides the configured secret: enough for those still
/// valid, not every one a long-running instance ever fetched.
const TOKENS: usize = 8;

/// The secrets of one adapter instance; cheap to clone, shared with what it spawns. Tokens
/// fetched at run time are added as they come; the oldest of them are forgotten.
#[derive(Clone, Default)]
pub struct Secrets {
    /// Each secret's forms: the configured secret first, then the latest tokens.
    forms: Arc<RwLock<Vec<Vec<Form>>>>,
}

/// One way a secret can appear.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Form {
    /// Matched without regard to ASCII letter case (the raw secret, percent-encoded).
    Folded(Vec<u8>),
    /// Matched as is (base64 is case-sensitive).
    Exact(Vec<u8>),
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets({} secrets)", self.forms.read().len())
    }
}

impl Secrets {
    pub fn new() -> Self {
        Self::default()
    }

    /// Secrets holding `secret`, if it is one.
    pub fn of(secret: Option<&str>) -> Self {
        let s = Self::new();
        if let Some(secret) = secret {
            s.add(secret);
        }
        s
    }

    /// Looks for `secret` from now on, in every form. Past the configured secret and
    /// [`TOKENS`] more, the oldest added is forgotten.
    pub fn add(&self, secret: &str) {
        let secret = secret.trim();
        if secret.len() < SHORTEST {
            return;
        }
        let mut forms = vec![Form::Folded(secret.to_ascii_lowercase().into_bytes())];
        for engine in [
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::URL_SAFE,
        ] {
            for offset in 0..3usize {
                // the secret after `offset` other bytes: the characters wholly its own
                let mut bytes = vec![0u8; offset];
                bytes.extend_from_slice(secret.as_bytes());
                let encoded = engine.encode(&bytes);
                let start = if offset == 0 { 0 } else { 4 };
                let end = (bytes.len() / 3) * 4;
                if end > start && end - start >= SHORTEST {
                    forms.push(Form::Exact(encoded.as_bytes()[start..end].to_vec()));
                }
            }
        }
        let mut all = self.forms.write();
        if all.contains(&forms) {
            return;
        }
        if all.len() > TOKENS {
            all.remove(1);
        }
        all.push(forms);
    }

    /// `text` with every occurrence of every secret, in any form, replaced.
    pub fn redact(&self, text: &str) -> String {
        let forms = self.forms.read();
        if forms.is_empty() {
            return text.to_owned();
        }
        let bytes = text.as_bytes();
        // the text as written, and percent-decoded; each decoded byte knows where it came from
        let (decoded, origin) = percent_decoded(bytes);
        let folded = decoded.to_ascii_lowercase();
        // every byte range a form covers
        let mut hidden = vec![false; bytes.len()];
        for form in forms.iter().flatten() {
            let (needle, hay) = match form {
                Form::Folded(n) => (n, folded.as_slice()),
                Form::Exact(n) => (n, decoded.as_slice()),
            };
            let mut at = 0;
            while let Some(i) = find(&hay[at..], needle) {
                let (start, end) = (origin[at + i].0, origin[at + i + needle.len() - 1].1);
                hidden[start..end].fill(true);
                at += i + 1;
            }
        }
        if !hidden.contains(&true) {
            return text.to_owned();
        }
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if hidden[i] {
                out.extend_from_slice(REDACTED.as_bytes());
                while i < bytes.len() && hidden[i] {
                    i += 1;
                }
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        // a secret cut a character in two only if it holds part of one; say so plainly
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Every string of a JSON value (keys included), redacted.
    pub fn redact_json(&self, value: &Value) -> Value {
        match value {
            Value::String(s) => Value::String(self.redact(s)),
            Value::Array(items) => {
                Value::Array(items.iter().map(|v| self.redact_json(v)).collect())
            }
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (self.redact(k), self.redact_json(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

/// `bytes` with every `%XX` escape decoded, and for each decoded byte the range of `bytes` it
/// came from.
fn percent_decoded(bytes: &[u8]) -> (Vec<u8>, Vec<(usize, usize)>) {
    let hex = |b: u8| (b as char).to_digit(16);
    let (mut out, mut origin) = (
        Vec::with_capacity(bytes.len()),
        Vec::with_capacity(bytes.len()),
    );
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).and_then(|b| hex(*b)),
                bytes.get(i + 2).and_then(|b| hex(*b)),
            )
        {
            out.push((hi * 16 + lo) as u8);
            origin.push((i, i + 3));
            i += 3;
        } else {
            out.push(bytes[i]);
            origin.push((i, i + 1));
            i += 1;
        }
    }
    (out, origin)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || needle.len() > hay.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

    use super::*;

    const SECRET: &str = "s3cr3t-Token_value/+=xyz";

    #[test]
    fn a_secret_is_found_in_every_form_it_may_come_back_in() {
        let s = Secrets::of(Some(SECRET));
        let b64 = base64::engine::general_purpose::STANDARD;
        let url = base64::engine::general_purpose::URL_SAFE;
        for echoed in [
            SECRET.to_owned(),
            SECRET.to_uppercase(),
            SECRET.to_lowercase(),
            utf8_percent_encode(SECRET, NON_ALPHANUMERIC).to_string(),
            utf8_percent_encode(SECRET, NON_ALPHANUMERIC)
                .to_string()
                .to_lowercase(),
            b64.encode(SECRET),
            b64.encode(format!("client:{SECRET}")),
            b64.encode(format!("ab:{SECRET}:cd")),
            url.encode(format!("x{SECRET}")),
        ] {
            let text = format!("{{\"echo\": \"Authorization: Basic {echoed}\"}}");
            let redacted = s.redact(&text);
            assert!(redacted.contains(REDACTED), "{echoed}: {redacted}");
            // nothing of the secret's own characters is left to piece together
            assert!(
                !redacted.contains(&echoed[echoed.len() / 2..]),
                "{echoed}: {redacted}"
            );
        }
    }

    #[test]
    fn redacting_comes_before_any_cut() {
        let s = Secrets::of(Some(SECRET));
        let text = format!("{}{SECRET}{}", "x".repeat(290), "y".repeat(50));
        let kept: String = s.redact(&text).chars().take(300).collect();
        assert!(!kept.contains(&SECRET[..4]), "{kept}");
    }

    #[test]
    fn json_answers_are_redacted_in_keys_and_values() {
        let s = Secrets::of(Some(SECRET));
        let answer = serde_json::json!({"id": "r-1", "headers": {"authorization": format!("Bearer {SECRET}")}, SECRET: [SECRET]});
        let kept = s.redact_json(&answer).to_string();
        assert!(!kept.contains(SECRET), "{kept}");
        assert!(kept.contains("r-1"));
    }

    #[test]
    fn the_configured_secret_stays_while_old_tokens_go() {
        let s = Secrets::of(Some(SECRET));
        for n in 0..20 {
            s.add(&format!("token-number-{n:04}"));
        }
        assert_eq!(s.redact(SECRET), REDACTED);
        assert_eq!(s.redact("token-number-0019"), REDACTED);
        assert_eq!(s.redact("token-number-0000"), "token-number-0000");
    }

    #[test]
    fn short_or_absent_secrets_redact_nothing() {
        assert_eq!(Secrets::of(Some("ab")).redact("ab ab"), "ab ab");
        assert_eq!(Secrets::of(None).redact("anything"), "anything");
        assert!(!format!("{:?}", Secrets::of(Some(SECRET))).contains(SECRET));
    }
}
