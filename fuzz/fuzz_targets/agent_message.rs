//! What the collector does with bytes off an agent's stream: decode an `AgentMessage`, and
//! validate it as the gateway does (node name, report rules, limits). Neither may panic;
//! whatever decodes encodes to bytes that decode and encode to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nodemedic_collector::validate::{self, ReportLimits};
use nodemedic_proto::v1::{AgentMessage, agent_message::Kind};
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(message) = AgentMessage::decode(data) else {
        return;
    };
    match &message.kind {
        Some(Kind::Hello(hello)) => {
            let _ = validate::node_name(&hello.node);
        }
        Some(Kind::Report(report)) if validate::node_name(&report.node).is_ok() => {
            let _ = validate::report(report, &report.node, 0, ReportLimits::default());
        }
        _ => {}
    }
    // Compared as bytes: a NaN in a report is not equal to itself.
    let bytes = message.encode_to_vec();
    let again = AgentMessage::decode(bytes.as_slice()).expect("what was encoded decodes");
    assert_eq!(again.encode_to_vec(), bytes);
});
