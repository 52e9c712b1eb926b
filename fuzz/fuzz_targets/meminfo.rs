//! `/proc/meminfo` and `/proc/vmstat` (the memory probe's key-value files), and the
//! pressure files of `/proc/pressure/*`: any text parses or is refused, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nodemedic_agent::parse::{kv::KvFile, psi};

fuzz_target!(|text: &str| {
    if let Ok(file) = KvFile::parse(text) {
        let _ = file.get("MemAvailable");
    }
    let _ = psi::parse(text);
});
