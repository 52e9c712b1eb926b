//! Pure parsers for the kernel's text files. No I/O: each takes the text and returns data,
//! so they are tested on real captured files (`../shared/fixtures/real/proc/`).

pub mod cgroup_memory;
pub mod cgroup_path;
pub mod kmsg;
pub mod kv;
pub mod mountinfo;
pub mod proc_stat;
pub mod psi;
pub mod resolv_conf;

/// Why a file could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {reason}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What was wrong.
    pub reason: String,
}

impl ParseError {
    pub(crate) fn new(line: usize, reason: impl Into<String>) -> Self {
        ParseError {
            line,
            reason: reason.into(),
        }
    }
}
