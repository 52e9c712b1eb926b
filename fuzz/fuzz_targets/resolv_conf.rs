//! `/etc/resolv.conf` (the DNS probe's view of a node's and a pod's resolver): any text
//! gives a configuration whose search expansion stays bounded and never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nodemedic_agent::parse::resolv_conf;

fuzz_target!(|text: &str| {
    let conf = resolv_conf::parse(text);
    let _ = conf.used_nameservers();
    let _ = conf.search_chars();
    let candidates = conf.candidates("example.com");
    assert!(!candidates.is_empty(), "the name itself is always tried");
    let _ = conf.queries_for_external("example.com", true);
});
