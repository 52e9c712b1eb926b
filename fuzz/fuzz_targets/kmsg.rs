//! Kernel log lines (the kernel probe): each line as a `/dev/kmsg` record or a line of any
//! log format, dated by the time it carries, its message found and run through the built-in
//! rules with the lines before it; never panics.
#![no_main]

use std::{
    sync::LazyLock,
    time::{Duration, SystemTime},
};

use libfuzzer_sys::fuzz_target;
use nodemedic_agent::{
    logs::rules::{KERNEL, Recent, RuleSet},
    parse::{kmsg, line_time},
};

static RULES: LazyLock<RuleSet> =
    LazyLock::new(|| RuleSet::load(KERNEL, &[] as &[&str]).expect("the built-in rules load"));

fuzz_target!(|text: &str| {
    let now = SystemTime::now();
    let clock = line_time::Clock {
        boot: now.checked_sub(Duration::from_secs(3600)),
        ..line_time::Clock::utc()
    };
    let mut recent = Recent::for_rules(&RULES);
    for line in text.lines() {
        let _ = line_time::logged_at(line, &clock, now);
        let message = match kmsg::record(line) {
            Ok(record) => record.message,
            Err(_) => kmsg::message(line),
        };
        let _ = RULES.matches(message, &recent);
        recent.push(message);
    }
});
