//! `/proc/self/mountinfo` (the disk probe's list of filesystems): any text parses or is
//! refused with the line, and never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nodemedic_agent::parse::mountinfo;

fuzz_target!(|text: &str| {
    if let Ok(mounts) = mountinfo::parse(text) {
        for m in &mounts {
            let _ = m.read_only();
        }
    }
});
