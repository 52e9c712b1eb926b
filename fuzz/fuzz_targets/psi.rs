//! The pressure files of `/proc/pressure/*` (the memory and system probes): any text parses
//! or is refused with its line, and never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nodemedic_agent::parse::psi;

fuzz_target!(|text: &str| {
    let _ = psi::parse(text);
});
