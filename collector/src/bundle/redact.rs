//! Redaction of values that look like credentials, in every text file of a bundle: private
//! keys, bearer tokens, JWTs, passwords in connection strings, and the values of keys or
//! environment variables whose names say secret, token, password or key. Each replacement
//! is counted, so the manifest can say how many were made.
//!
//! The patterns work on bytes and in ASCII (`(?-u)`): the names they look for are ASCII,
//! values end at ASCII delimiters (so a multi-byte character is never split), the text
//! need not be checked as UTF-8 first, and the automata stay small. That, and a SIMD
//! search for the literals every pattern needs, make a file with nothing to redact cost
//! one fast pass.

use std::borrow::Cow;

use regex::bytes::{Captures, Regex};

/// What replaces a redacted value.
pub const REDACTED: &str = "[REDACTED]";

/// The patterns, compiled once.
pub struct Redactor {
    /// The literals one of which every pattern needs (a SIMD literal search, many times
    /// faster than `any`): most text has none, and is passed over at that speed.
    literals: Regex,
    /// Every pattern in one: most files have nothing to redact, and one scan says so.
    any: Regex,
    /// Whole matches replaced.
    whole: Vec<Regex>,
    /// Matches whose group `v` is replaced, the rest kept (so JSON stays JSON).
    value: Vec<Regex>,
}

const WHOLE: &[&str] = &[
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
    // A JSON Web Token: three base64url parts, the first a JSON header.
    r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
];

/// At least one of these is in anything [`WHOLE`] or [`VALUE`] match, once the text is in
/// ASCII lower case (a superset: `passw` stands for passwd and password). Searched in
/// lowered text, not case-insensitively: a case-insensitive set has too many spellings for
/// the SIMD literal search, and ran in the lazy DFA at a fifth of the speed.
const LITERALS: &str = r"(?-u)-----begin|eyj|bearer|://|secret|token|passw|api[_-]?key|access[_-]?key|private[_-]?key|credential|authoriz";

/// Text is lowered and searched for [`LITERALS`] this much at a time.
const CHUNK: usize = 64 * 1024;
/// Text this short is lowered into a buffer this small.
const SHORT: usize = 256;
/// Chunks overlap by this much, so a literal across a chunk's end is found.
const LONGEST_LITERAL: usize = 16;

const VALUE: &[&str] = &[
    // An Authorization header or field, whatever its scheme (Bearer, Basic, token).
    r"(?i)authorization\x22?\s*[=:]\s*\x22?(?:(?:bearer|basic|token|digest)\s+)?(?P<v>[A-Za-z0-9._~+/=-]{8,})",
    r"(?i)\bbearer\s+(?P<v>[A-Za-z0-9._~+/=-]{8,})",
    // scheme://user:password@host
    r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@\x22]+:(?P<v>[^\s@/\x22]+)@",
    // "name": "value" in JSON, where the name says what it is.
    r#"(?i)"[^"]*(?:secret|token|passw(?:or)?d|api[_-]?key|private[_-]?key|credential)[^"]*"\s*:\s*"(?P<v>[^"]+)""#,
    // A finding's evidence whose key says what its text is: {"key":"password","text":"…"}.
    r#"(?i)"key"\s*:\s*"[^"]*(?:secret|token|passw(?:or)?d|api[_-]?key|access[_-]?key|private[_-]?key|credential|authorization)[^"]*"\s*,\s*"text"\s*:\s*"(?P<v>[^"]+)""#,
    // NAME=value and name: value in text (environment, flags, config lines).
    r#"(?i)\b[A-Za-z0-9_.-]*(?:secret|token|passw(?:or)?d|api[_-]?key|access[_-]?key|private[_-]?key|credential)[A-Za-z0-9_.-]*\s*[=:]\s*(?P<v>[^\s",;&]{3,})"#,
];

impl Default for Redactor {
    fn default() -> Self {
        let re = |p: &str| Regex::new(&format!("(?-u){p}")).expect("a valid built-in pattern");
        let any = WHOLE
            .iter()
            .chain(VALUE)
            .map(|p| format!("(?:(?-u){})", p.replace("?P<v>", "")))
            .collect::<Vec<_>>()
            .join("|");
        Redactor {
            literals: Regex::new(LITERALS).expect("valid literals"),
            any: re(&any),
            whole: WHOLE.iter().map(|p| re(p)).collect(),
            value: VALUE.iter().map(|p| re(p)).collect(),
        }
    }
}

/// The patterns, compiled once for the process (answers to viewers use it per call).
pub fn shared() -> &'static Redactor {
    static SHARED: std::sync::LazyLock<Redactor> = std::sync::LazyLock::new(Redactor::default);
    &SHARED
}

impl Redactor {
    /// `message` with credentials replaced, through its proto3 JSON form (only the
    /// contents of strings change, so it reads back): what a viewer's answers get. A
    /// message with nothing to redact costs one serialization and one scan.
    pub fn redact_message<T: serde::Serialize + serde::de::DeserializeOwned>(
        &self,
        message: T,
    ) -> T {
        let Ok(json) = serde_json::to_vec(&message) else {
            return message;
        };
        if !self.needed(&json) {
            return message;
        }
        match self.redact(&json) {
            (_, 0) => message,
            (out, _) => serde_json::from_slice(&out).unwrap_or(message),
        }
    }

    /// Whether `text` holds something that looks like a credential (one scan).
    pub fn needed(&self, text: &[u8]) -> bool {
        self.has_literal(text) && self.any.is_match(text)
    }

    /// Whether one of [`LITERALS`] is in `text`, in any case.
    fn has_literal(&self, text: &[u8]) -> bool {
        if text.len() <= SHORT {
            // One value: not worth zeroing the whole chunk buffer for.
            let mut lowered = [0u8; SHORT];
            for (to, from) in lowered.iter_mut().zip(text) {
                *to = from.to_ascii_lowercase();
            }
            return self.literals.is_match(&lowered[..text.len()]);
        }
        let mut lowered = [0u8; CHUNK + LONGEST_LITERAL];
        (0..text.len()).step_by(CHUNK).any(|start| {
            let chunk = &text[start..text.len().min(start + CHUNK + LONGEST_LITERAL)];
            let lowered = &mut lowered[..chunk.len()];
            for (to, from) in lowered.iter_mut().zip(chunk) {
                *to = from.to_ascii_lowercase();
            }
            self.literals.is_match(lowered)
        })
    }

    /// A JSON value (`value`, as JSON text) with credentials replaced, judged together with
    /// its key (JSON text too) as `"key":value`, and how many were.
    pub fn redact_value<'v>(&self, key: Option<&[u8]>, value: &'v [u8]) -> (Cow<'v, [u8]>, usize) {
        let mut pair = Vec::with_capacity(key.map_or(0, |k| k.len() + 1) + value.len());
        if let Some(key) = key {
            pair.extend_from_slice(key);
            pair.push(b':');
        }
        let prefix = pair.len();
        pair.extend_from_slice(value);
        if !self.needed(&pair) {
            return (Cow::Borrowed(value), 0);
        }
        match self.redact(&pair) {
            (_, 0) => (Cow::Borrowed(value), 0),
            (out, n) if out.starts_with(&pair[..prefix]) => (Cow::Owned(out[prefix..].to_vec()), n),
            // The key itself held something redacted: the value alone, then.
            _ => {
                let (out, n) = self.redact(value);
                (Cow::Owned(out), n)
            }
        }
    }

    /// `text` with credentials replaced, and how many were.
    pub fn redact(&self, text: &[u8]) -> (Vec<u8>, usize) {
        if !self.needed(text) {
            return (text.to_owned(), 0);
        }
        let mut out = text.to_owned();
        let mut count = 0;
        for re in &self.whole {
            let n = re.find_iter(&out).count();
            if n > 0 {
                count += n;
                out = re.replace_all(&out, REDACTED.as_bytes()).into_owned();
            }
        }
        for re in &self.value {
            let mut n = 0;
            let replaced = re.replace_all(&out, |c: &Captures<'_>| {
                let whole = c.get(0).expect("a match");
                let v = c.name("v").expect("every value pattern has a v group");
                if v.as_bytes() == REDACTED.as_bytes() {
                    return whole.as_bytes().to_vec();
                }
                n += 1;
                let start = v.start() - whole.start();
                let end = v.end() - whole.start();
                [
                    &whole.as_bytes()[..start],
                    REDACTED.as_bytes(),
                    &whole.as_bytes()[end..],
                ]
                .concat()
            });
            if n > 0 {
                count += n;
                out = replaced.into_owned();
            }
        }
        (out, count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_found_in_any_case_and_across_chunks() {
        let r = Redactor::default();
        for word in ["PassWord", "SECRET", "x-Api-Key", "Bearer"] {
            for at in [0, CHUNK - 3, CHUNK + 5, 3 * CHUNK - 1] {
                let mut text = vec![b'.'; 4 * CHUNK];
                text[at..at + word.len()].copy_from_slice(word.as_bytes());
                assert!(r.has_literal(&text), "{word} at {at}");
            }
        }
        assert!(!r.has_literal(&vec![b'.'; 4 * CHUNK]));
        assert!(r.has_literal(b"\"DB_PassWord\""), "a short text");
        assert!(!r.has_literal(b"\"kubelet\""));
    }

    #[test]
    fn credentials_are_replaced_and_counted_and_the_rest_kept() {
        let r = Redactor::default();
        let text = r#"{"message": "login with Authorization: Bearer abcdef0123456789 failed",
"env": "DB_PASSWORD=hunter22 PATH=/usr/bin",
"url": "postgres://app:s3cr3t@db:5432/app",
"apiToken": "tok_123456",
"jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
"key": "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAK\n-----END RSA PRIVATE KEY-----",
"mount": "/var/lib/kubelet", "free": "12%"}"#;
        let (out, n) = r.redact(text.as_bytes());
        let out = String::from_utf8(out).unwrap();
        for secret in [
            "abcdef0123456789",
            "hunter22",
            "s3cr3t",
            "tok_123456",
            "eyJhbGci",
            "MIIBOgIBAAJBAK",
        ] {
            assert!(!out.contains(secret), "{secret} left in {out}");
        }
        assert_eq!(n, 6, "{out}");
        assert!(
            out.contains("PATH=/usr/bin")
                && out.contains("/var/lib/kubelet")
                && out.contains("12%")
        );
        assert!(
            out.contains("postgres://app:[REDACTED]@db:5432/app"),
            "{out}"
        );
        serde_json::from_str::<serde_json::Value>(&out).expect("still JSON");
        assert_eq!(
            r.redact(out.as_bytes()).1,
            0,
            "redacting twice changes nothing"
        );
        let accents = "{\"note\": \"café ünïcödé\", \"dbPassword\": \"pässwörd€\"}";
        let (out, n) = r.redact(accents.as_bytes());
        assert_eq!(n, 1);
        assert_eq!(
            String::from_utf8(out).expect("no character split"),
            "{\"note\": \"café ünïcödé\", \"dbPassword\": \"[REDACTED]\"}"
        );
    }

    #[test]
    fn evidence_named_after_a_credential_and_authorization_headers_are_redacted() {
        let r = Redactor::default();
        let finding = serde_json::json!({
            "check": "pod.config_error",
            "evidence": [
                {"key": "password", "text": "plainword1"},
                {"key": "api_token", "text": "plainword2"},
                {"key": "Authorization", "text": "plainword3"},
                {"key": "mount_point", "text": "/var/lib/kubelet"},
            ],
            "message": "curl -H 'Authorization: Basic dXNlcjpwYXNzd29yZA==' failed",
        });
        let back: serde_json::Value = r.redact_message(finding);
        let text = back.to_string();
        for secret in [
            "plainword1",
            "plainword2",
            "plainword3",
            "dXNlcjpwYXNzd29yZA",
        ] {
            assert!(!text.contains(secret), "{secret} left in {text}");
        }
        assert!(text.contains("/var/lib/kubelet"), "{text}");
        assert_eq!(back["evidence"][0]["key"], "password", "the key stays");
    }
}
