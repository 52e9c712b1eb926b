//! Pure parsers for the text files nodemedic reads by hand, where procfs-core has no parser
//! (cgroup files, the kernel log, resolv.conf) or where its parser falls short (mountinfo:
//! escapes left undone, 2.4 times the CPU; the pressure files of older kernels). No I/O: each takes the text and returns data, so
//! they are tested on real captured files (`tests/fixtures/real/`). Files procfs-core
//! parses whole are read with `HostRoot::parse` (the host module).

pub mod bonding;
pub mod cgroup_cpu;
pub mod cgroup_memory;
pub mod cgroup_path;
pub mod kmsg;
pub mod line_time;
pub mod mountinfo;
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
