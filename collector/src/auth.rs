//! Who may call what: tooling authenticates with a bearer token (a file of token hashes,
//! read again when it changes) or a client certificate that carries a role, and each call
//! names the role it needs. `viewer` queries, watches and downloads redacted bundles;
//! `operator` may also plan and apply remediation actions, ask agents to collect, and
//! download unredacted bundles. Every denial is logged and counted.
//!
//! With `--insecure` and no token file, nobody is identified and every caller is an
//! operator (tests, a trusted network); the collector says so at start and on `/readyz`.

use std::{collections::HashMap, path::Path, sync::Arc};

use tracing::warn;

use crate::{bundle::sha256_hex, listener::Peer, metrics::Metrics, reload::Reloading};

/// What a caller may do; an operator may do everything a viewer may.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Queries, watches, redacted bundles.
    Viewer,
    /// Also remediation actions, collection requests, unredacted bundles.
    Operator,
}

impl Role {
    /// The role's name in token files and certificates.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
        }
    }

    /// Parses `viewer` or `operator`.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            _ => None,
        }
    }
}

/// The organisation that carries a tooling certificate's role (`nodemedic:<role>`, as
/// Kubernetes carries groups).
pub const ROLE_ORG_PREFIX: &str = "nodemedic:";

/// The tooling identity a verified client certificate carries: its common name and the
/// role in its `nodemedic:<role>` organisation (`certs client`).
pub fn tooling_identity(der: &[u8]) -> Option<(String, Role)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let role = subject
        .iter_organization()
        .find_map(|o| Role::parse(o.as_str().ok()?.strip_prefix(ROLE_ORG_PREFIX)?))?;
    let cn = subject.iter_common_name().next()?.as_str().ok()?;
    Some((cn.to_owned(), role))
}

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// Who, as the operator named them: `token:alice`, `cert:ci-bot`, or `anonymous`.
    pub name: String,
    /// What they may do.
    pub role: Role,
}

/// Why a call was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Denied {
    /// No credentials, or ones the collector does not know.
    #[error("{0}")]
    Unauthenticated(String),
    /// Known caller, role too low.
    #[error("{caller} is a {role}; {call} needs an operator")]
    Forbidden {
        /// Who asked.
        caller: String,
        /// Their role.
        role: &'static str,
        /// What they called.
        call: &'static str,
    },
    /// Too many failed attempts from this source: refused for a while without looking.
    #[error("too many failed attempts from {0} in the last minute; wait and try again")]
    Throttled(String),
}

impl From<Denied> for tonic::Status {
    fn from(d: Denied) -> Self {
        match &d {
            Denied::Unauthenticated(_) => tonic::Status::unauthenticated(d.to_string()),
            Denied::Forbidden { .. } => tonic::Status::permission_denied(d.to_string()),
            Denied::Throttled(_) => tonic::Status::resource_exhausted(d.to_string()),
        }
    }
}

/// What a request presented.
#[derive(Clone, Copy, Debug, Default)]
pub struct Credentials<'a> {
    /// The `authorization` header's value.
    pub authorization: Option<&'a str>,
    /// The connection, with its verified client certificate when TLS is on.
    pub peer: Option<&'a Peer>,
}

/// A token file's entries: SHA-256 (hex) of the token → (name, role).
pub type TokenTable = HashMap<String, (String, Role)>;

/// Parses a token file: one `<sha256-hex> <role> <name>` per line, `#` comments and blank
/// lines ignored. The error names the line.
pub fn parse_tokens(text: &str) -> Result<TokenTable, String> {
    let mut table = TokenTable::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let at = |what: String| format!("line {}: {what}", i + 1);
        let [hash, role, name] = fields[..] else {
            return Err(at(format!(
                "expected `<sha256-hex> <role> <name>`, found {} fields",
                fields.len()
            )));
        };
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(at(
                "the hash is not 64 hex digits (SHA-256 of the token)".into()
            ));
        }
        let role = Role::parse(role)
            .ok_or_else(|| at(format!("role {role:?} is not viewer or operator")))?;
        table.insert(hash.to_ascii_lowercase(), (name.to_owned(), role));
    }
    Ok(table)
}

/// Reads the token file. A missing file holds no tokens (an optional Kubernetes Secret
/// not created yet); it is read when it appears.
fn load_tokens(file: &Path) -> Result<TokenTable, String> {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            warn!(message = "The token file does not exist (yet): no token is accepted until it does.", file = %file.display());
            String::new()
        }
        Err(e) => return Err(format!("{}: {e}", file.display())),
    };
    parse_tokens(&text).map_err(|e| format!("{}: {e}", file.display()))
}

/// A new random token (64 hex digits) and the line that admits it in a token file.
pub fn new_token(name: &str, role: Role) -> Result<(String, String), String> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("token name {name:?} must be one word"));
    }
    let mut secret = [0u8; 32];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut secret)
        .map_err(|e| format!("no randomness: {e:?}"))?;
    let token = crate::bundle::hex(&secret);
    let line = format!(
        "{} {} {name}\n",
        sha256_hex(token.as_bytes()),
        role.as_str()
    );
    Ok((token, line))
}

/// Failed attempts one source may make in a [`FAILURE_WINDOW`] before it is throttled.
pub const MAX_FAILURES: u32 = 20;
/// The window failed attempts are counted in.
pub const FAILURE_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);
/// Sources whose failures are remembered at most (the oldest window is forgotten first).
const MAX_SOURCES: usize = 10_000;

/// One source's failed attempts in its current window.
#[derive(Debug)]
struct Failures {
    since: std::time::Instant,
    count: u32,
}

/// The collector's access rules.
pub struct Auth {
    /// The token file's table, or why its latest version cannot be used (then no token is
    /// accepted: a revocation saved with a broken line must not leave the old file in force).
    tokens: Option<Reloading<Result<TokenTable, String>>>,
    /// No identity at all (`--insecure` without a token file): everyone is an operator.
    open: bool,
    metrics: Arc<Metrics>,
    /// Failed attempts by source address: a guesser is throttled, and logged once a window
    /// rather than once an attempt.
    failures: std::sync::Mutex<HashMap<String, Failures>>,
}

impl Auth {
    /// Access for a collector: `tokens` is the token file, if any; `open` lets unidentified
    /// callers in as operators when there is no token file.
    pub fn new(tokens: Option<&Path>, open: bool, metrics: Arc<Metrics>) -> Result<Self, String> {
        let tokens = tokens
            .map(|path| {
                let file = path.to_owned();
                Reloading::load(
                    "token file",
                    vec![file.clone()],
                    Arc::clone(&metrics),
                    move || load_tokens(&file).map(Ok),
                )
                .map(|r| r.fail_closed(Err))
            })
            .transpose()?;
        let open = open && tokens.is_none();
        Ok(Auth {
            tokens,
            open,
            metrics,
            failures: std::sync::Mutex::default(),
        })
    }

    /// Whether unidentified callers are let in (said on `/readyz`).
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Who is calling, if the credentials say.
    fn identify(&self, creds: Credentials<'_>) -> Result<Caller, String> {
        if let Some(header) = creds.authorization {
            let token = header
                .strip_prefix("Bearer ")
                .ok_or("the authorization header is not `Bearer <token>`")?
                .trim();
            let Some(tokens) = &self.tokens else {
                return Err("this collector has no token file; use a client certificate".into());
            };
            let table = tokens.get();
            let table = table.as_ref().as_ref().map_err(|why| {
                format!(
                    "the token file cannot be used ({why}); no token is accepted until it is fixed"
                )
            })?;
            return match table.get(&sha256_hex(token.as_bytes())) {
                Some((name, role)) => Ok(Caller {
                    name: format!("token:{name}"),
                    role: *role,
                }),
                None => Err("unknown token".into()),
            };
        }
        let certified = creds
            .peer
            .and_then(|p| p.cert.as_deref())
            .and_then(tooling_identity);
        match certified {
            Some((name, role)) => Ok(Caller {
                name: format!("cert:{name}"),
                role,
            }),
            None if self.open => Ok(Caller {
                name: "anonymous".into(),
                role: Role::Operator,
            }),
            None => Err(
                "no credentials: give a bearer token (--token-file) or a client certificate with a role"
                    .into(),
            ),
        }
    }

    /// Lets the call through when the caller has at least the role `need`; otherwise logs
    /// and counts the denial. A source that failed to authenticate [`MAX_FAILURES`] times
    /// in a [`FAILURE_WINDOW`] is refused outright until the window ends; its failures are
    /// logged when the first comes and then once, summed, as the window ends.
    pub fn authorize(
        &self,
        call: &'static str,
        need: Role,
        creds: Credentials<'_>,
    ) -> Result<Caller, Denied> {
        let source = creds.peer.map_or_else(
            || "an unknown address".to_owned(),
            |p| p.addr.ip().to_string(),
        );
        if self.throttled(&source) {
            self.metrics.deny(call, "throttled");
            return Err(Denied::Throttled(source));
        }
        let denied = match self.identify(creds) {
            Ok(caller) if caller.role >= need => return Ok(caller),
            Ok(caller) => Denied::Forbidden {
                caller: caller.name,
                role: caller.role.as_str(),
                call,
            },
            Err(why) => Denied::Unauthenticated(why),
        };
        let reason = match denied {
            Denied::Unauthenticated(_) => {
                if self.failed(&source) == 1 {
                    warn!(message = "Denied a call: its credentials are unknown or missing (further failures from this source are summed once a minute).", call, error = %denied, %source);
                }
                "unauthenticated"
            }
            Denied::Forbidden { .. } => {
                warn!(message = "Denied a call.", call, reason = "forbidden", error = %denied, %source);
                "forbidden"
            }
            Denied::Throttled(_) => "throttled",
        };
        self.metrics.deny(call, reason);
        Err(denied)
    }

    /// Counts a failure from `source`; answers its count in the current window.
    fn failed(&self, source: &str) -> u32 {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.len() >= MAX_SOURCES && !failures.contains_key(source) {
            let oldest = failures
                .iter()
                .min_by_key(|(_, f)| f.since)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                failures.remove(&oldest);
            }
        }
        let f = failures.entry(source.to_owned()).or_insert(Failures {
            since: std::time::Instant::now(),
            count: 0,
        });
        f.count += 1;
        f.count
    }

    /// Whether `source` is over its failures in the current window; a window that ended is
    /// logged (when it held more than one failure) and forgotten.
    fn throttled(&self, source: &str) -> bool {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let Some(f) = failures.get(source) else {
            return false;
        };
        if f.since.elapsed() >= FAILURE_WINDOW {
            if f.count > 1 {
                warn!(message = "Failed attempts from one source in the last window.", %source, failures = f.count, window = ?FAILURE_WINDOW, throttled = f.count >= MAX_FAILURES);
            }
            failures.remove(source);
            return false;
        }
        f.count >= MAX_FAILURES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_files_are_parsed_and_their_errors_name_the_line() {
        let (token, line) = new_token("alice", Role::Operator).unwrap();
        let text = format!("# who may call\n\n{line}");
        let table = parse_tokens(&text).unwrap();
        assert_eq!(
            table.get(&sha256_hex(token.as_bytes())),
            Some(&("alice".to_owned(), Role::Operator))
        );
        assert!(
            !text.contains(&token),
            "the file holds the token's hash, not the token"
        );
        let e = parse_tokens("# x\nabc viewer bob\n").unwrap_err();
        assert!(e.starts_with("line 2:"), "{e}");
        let e = parse_tokens(&format!("{} admin bob\n", "a".repeat(64))).unwrap_err();
        assert!(e.contains("\"admin\""), "{e}");
        assert!(new_token("two words", Role::Viewer).is_err());
    }

    #[test]
    fn roles_are_checked_per_call() {
        let dir = tempfile::tempdir().unwrap();
        let (viewer, line1) = new_token("v", Role::Viewer).unwrap();
        let (operator, line2) = new_token("o", Role::Operator).unwrap();
        let file = dir.path().join("tokens");
        std::fs::write(&file, format!("{line1}{line2}")).unwrap();
        let metrics = Arc::new(Metrics::default());
        let auth = Auth::new(Some(&file), true, Arc::clone(&metrics)).unwrap();
        assert!(
            !auth.is_open(),
            "a token file closes an --insecure collector"
        );
        let bearer = |t: &str| format!("Bearer {t}");
        fn with(h: &str) -> Credentials<'_> {
            Credentials {
                authorization: Some(h),
                peer: None,
            }
        }
        let v = bearer(&viewer);
        assert_eq!(
            auth.authorize("ListNodes", Role::Viewer, with(&v)).unwrap(),
            Caller {
                name: "token:v".into(),
                role: Role::Viewer
            }
        );
        assert!(matches!(
            auth.authorize("ApplyRemediation", Role::Operator, with(&v)),
            Err(Denied::Forbidden { .. })
        ));
        let o = bearer(&operator);
        assert!(
            auth.authorize("ApplyRemediation", Role::Operator, with(&o))
                .is_ok()
        );
        assert!(matches!(
            auth.authorize("ListNodes", Role::Viewer, with("Bearer nope")),
            Err(Denied::Unauthenticated(_))
        ));
        assert!(matches!(
            auth.authorize("ListNodes", Role::Viewer, Credentials::default()),
            Err(Denied::Unauthenticated(_))
        ));
        let text = metrics.encode();
        assert!(
            text.contains(
                r#"nodemedic_denied_total{call="ApplyRemediation",reason="forbidden"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"nodemedic_denied_total{call="ListNodes",reason="unauthenticated"} 2"#),
            "{text}"
        );
    }

    #[test]
    fn a_guessing_source_is_throttled_and_others_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let (token, line) = new_token("t", Role::Viewer).unwrap();
        let file = dir.path().join("tokens");
        std::fs::write(&file, line).unwrap();
        let metrics = Arc::new(Metrics::default());
        let auth = Auth::new(Some(&file), false, Arc::clone(&metrics)).unwrap();
        let peer = |ip: &str| Peer {
            addr: format!("{ip}:4000").parse().unwrap(),
            cert: None,
        };
        let (guesser, other) = (peer("10.0.0.9"), peer("10.0.0.10"));
        let wrong = "Bearer 0000".to_owned();
        let right = format!("Bearer {token}");
        let call = |p: &Peer, h: &str| {
            auth.authorize(
                "ListNodes",
                Role::Viewer,
                Credentials {
                    authorization: Some(h),
                    peer: Some(p),
                },
            )
        };
        for _ in 0..MAX_FAILURES {
            assert!(matches!(
                call(&guesser, &wrong),
                Err(Denied::Unauthenticated(_))
            ));
        }
        // Over the limit: refused without looking, even with the right token.
        assert!(matches!(call(&guesser, &wrong), Err(Denied::Throttled(_))));
        assert!(matches!(call(&guesser, &right), Err(Denied::Throttled(_))));
        assert!(
            call(&other, &right).is_ok(),
            "another source is not throttled"
        );
        let text = metrics.encode();
        assert!(
            text.contains(r#"nodemedic_denied_total{call="ListNodes",reason="throttled"} 2"#),
            "{text}"
        );
    }

    #[test]
    fn a_token_file_saved_with_a_broken_line_admits_no_token_until_fixed() {
        let dir = tempfile::tempdir().unwrap();
        let (alice, a) = new_token("alice", Role::Viewer).unwrap();
        let (bob, b) = new_token("bob", Role::Viewer).unwrap();
        let file = dir.path().join("tokens");
        std::fs::write(&file, format!("{a}{b}")).unwrap();
        let metrics = Arc::new(Metrics::default());
        let auth = Auth::new(Some(&file), false, Arc::clone(&metrics)).unwrap();
        let call = |token: &str| {
            let header = format!("Bearer {token}");
            auth.authorize(
                "ListNodes",
                Role::Viewer,
                Credentials {
                    authorization: Some(&header),
                    peer: None,
                },
            )
        };
        assert!(call(&bob).is_ok());
        // Bob revoked, and a line broken in the same save.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        std::fs::write(&file, format!("{a}not a token line\n")).unwrap();
        for token in [&alice, &bob] {
            match call(token) {
                Err(Denied::Unauthenticated(why)) => {
                    assert!(
                        why.contains("cannot be used") && why.contains("line 2"),
                        "{why}"
                    )
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(
            metrics
                .encode()
                .contains(r#"nodemedic_reloads_total{what="token file",result="error"} 1"#)
        );
        std::thread::sleep(std::time::Duration::from_millis(1100));
        std::fs::write(&file, &a).unwrap();
        assert!(call(&alice).is_ok(), "fixed: in force again");
        assert!(call(&bob).is_err(), "and the revocation holds");
    }

    #[test]
    fn an_insecure_collector_without_tokens_lets_everyone_operate() {
        let auth = Auth::new(None, true, Arc::new(Metrics::default())).unwrap();
        assert_eq!(
            auth.authorize("ApplyRemediation", Role::Operator, Credentials::default())
                .unwrap()
                .name,
            "anonymous"
        );
        let closed = Auth::new(None, false, Arc::new(Metrics::default())).unwrap();
        assert!(
            closed
                .authorize("ListNodes", Role::Viewer, Credentials::default())
                .is_err()
        );
    }
}
