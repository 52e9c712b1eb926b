//! Kernel log lines (the kernel probe): each line as a `/dev/kmsg` record or a line of any
//! log format, its message found and run through the built-in rules; never panics.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use nodemedic_agent::{parse::kmsg, probes::kernel::rules::RuleSet};

static RULES: LazyLock<RuleSet> =
    LazyLock::new(|| RuleSet::load(&[] as &[&str]).expect("the built-in rules load"));

fuzz_target!(|text: &str| {
    for line in text.lines() {
        let message = match kmsg::record(line) {
            Ok(record) => record.message,
            Err(_) => kmsg::message(line),
        };
        let _ = RULES.matches(message);
    }
});
