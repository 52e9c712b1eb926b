//! The services probe asking a real containerd (its CRI plugin) for its Status: with no
//! CNI network configured it says NetworkReady=false, as on a node whose CNI plugin has not
//! started; once a network config appears it reloads and says true. Needs root and
//! containerd (scripts/test installs it); fails, never skips.

use std::time::{Duration, Instant, SystemTime};

use nodemedic_agent::{
    host::HostRoot,
    probes::services::{ServicesConfig, ServicesProbe},
    probes::{Probe, ProbeContext, Section},
    runtime::endpoint::Sockets,
    testing::Containerd,
};
use nodemedic_proto::v1::{Finding, ServicesSection, Severity};

fn run(probe: &ServicesProbe) -> (ServicesSection, Vec<Finding>) {
    let out = probe
        .run(&ProbeContext {
            host: HostRoot::new("/"),
            now: SystemTime::now(),
        })
        .expect("the probe runs");
    let Section::Services(s) = out.section else {
        panic!("not a services section")
    };
    (s, out.findings)
}

#[test]
fn a_real_containerd_without_cni_is_network_not_ready_until_a_network_appears() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Containerd::start(&dir.path().join("containerd"));
    let probe = ServicesProbe::new(
        ServicesConfig::default(),
        Sockets {
            cri: Some(runtime.socket.display().to_string()),
            ..Sockets::default()
        },
    );

    let (s, findings) = run(&probe);
    let r = &s.runtimes[0];
    assert_eq!(r.error, "", "{r:?}");
    assert!(r.version.starts_with("containerd "), "{r:?}");
    let ready = |s: &ServicesSection, t: &str| {
        s.runtimes[0]
            .conditions
            .iter()
            .find(|c| c.r#type == t)
            .unwrap_or_else(|| panic!("no {t} condition: {s:?}"))
            .clone()
    };
    assert!(ready(&s, "RuntimeReady").status);
    let network = ready(&s, "NetworkReady");
    assert!(!network.status);
    assert_eq!(network.reason, "NetworkPluginNotReady");
    let checks: Vec<(&str, Severity)> = findings
        .iter()
        .map(|f| (f.check.as_str(), f.severity()))
        .collect();
    assert_eq!(checks, [("services.network_not_ready", Severity::Critical)]);
    assert!(
        findings[0].message.contains("cni"),
        "the runtime's own words: {}",
        findings[0].message
    );

    // The CNI plugin's installer writes its network config; the runtime picks it up.
    std::fs::write(
        runtime.cni_conf_dir.join("10-test.conflist"),
        r#"{"cniVersion": "1.0.0", "name": "test", "plugins": [{"type": "bridge", "bridge": "nm0"}, {"type": "loopback"}]}"#,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (s, findings) = run(&probe);
        if ready(&s, "NetworkReady").status {
            assert!(findings.is_empty(), "{findings:?}");
            break;
        }
        assert!(Instant::now() < deadline, "NetworkReady still false: {s:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}
