//! The DNS probe against real dnsmasq servers on 127.0.0.x, with faults injected: a killed
//! server, a dead upstream (SERVFAIL), a missing name, slow answers, lost answers, TCP
//! refused, and a bad resolv.conf. Queries go only to servers these tests start.

use std::time::Duration;

use nodemedic_agent::{
    config::DnsConfig,
    probes::dns::DnsProbe,
    probes::{Probe, ProbeContext, Section},
    testing::{DnsStub, Dnsmasq, FakeHost, StubMode},
};
use nodemedic_proto::v1::{DnsSection, Finding, Severity};

const API: &str = "kubernetes.default.svc.cluster.local.";

fn config(nameserver: &str) -> DnsConfig {
    DnsConfig {
        nameservers: vec![nameserver.to_owned()],
        query_timeout: Duration::from_millis(400),
        tcp_every: 1000,
        search_every: 1000,
        ..DnsConfig::default()
    }
}

fn run(probe: &DnsProbe, host: &FakeHost) -> (DnsSection, Vec<Finding>) {
    let ctx = ProbeContext {
        host: host.root(),
        now: std::time::SystemTime::now(),
    };
    let out = probe.run(&ctx).expect("the DNS probe runs");
    let Section::Dns(section) = out.section else {
        panic!("not a DNS section")
    };
    (*section, out.findings)
}

fn checks(findings: &[Finding]) -> Vec<(&str, Severity, &str)> {
    findings
        .iter()
        .map(|f| (f.check.as_str(), f.severity(), f.subject.as_str()))
        .collect()
}

#[test]
fn a_healthy_server_over_udp_and_tcp_and_through_the_search_list() {
    let dns = Dnsmasq::start("127.0.0.41", &[]);
    let host = FakeHost::new();
    let probe = DnsProbe::new(DnsConfig {
        tcp_every: 1,
        search_every: 1,
        ..config(&dns.addr.to_string())
    });
    let (section, findings) = run(&probe, &host);
    assert!(findings.is_empty(), "{findings:?}");
    assert_eq!(section.probes.len(), 2);
    for p in &section.probes {
        assert_eq!(
            (p.name.as_str(), p.answered, p.last_outcome.as_str()),
            (API, 1, "NOERROR"),
            "{p:?}"
        );
        assert_eq!(p.last_answers, ["10.96.0.1"]);
    }
    let lookup = section.search_lookup.unwrap();
    // default.svc.cluster.local first (NXDOMAIN), then svc.cluster.local answers.
    assert_eq!(
        (lookup.resolved_as.as_str(), lookup.queries),
        ("kubernetes.default.svc.cluster.local", 2)
    );
    assert_eq!(
        section.queries_sent, 4,
        "UDP, TCP and two search candidates"
    );
}

#[test]
fn a_killed_server_is_unreachable() {
    let dns = Dnsmasq::start("127.0.0.42", &[]);
    let addr = dns.addr.to_string();
    let host = FakeHost::new();
    let probe = DnsProbe::new(config(&addr));
    assert!(run(&probe, &host).1.is_empty());
    drop(dns);
    // A refused query (ICMP port unreachable) says so at once; but the kernel rate-limits
    // those ICMP messages, and under parallel tests a refusal can arrive as a timeout,
    // which counts after 3 in a row. Either way it is unreachable within 3 cycles.
    let mut findings = Vec::new();
    for _ in 0..3 {
        findings = run(&probe, &host).1;
        if !findings.is_empty() {
            break;
        }
    }
    assert_eq!(
        checks(&findings),
        [(
            "dns.unreachable",
            Severity::Critical,
            format!("udp://{addr}").as_str()
        )]
    );
    assert!(
        findings[0].message.contains("does not answer over UDP"),
        "{}",
        findings[0].message
    );
}

#[test]
fn a_dead_upstream_gives_servfail_and_a_missing_name_nxdomain() {
    let upstream = DnsStub::start("127.0.0.43", StubMode::ServFail);
    let forward = format!(
        "--server=/broken.example/{}#{}",
        upstream.addr.ip(),
        upstream.addr.port()
    );
    let dns = Dnsmasq::start("127.0.0.44", &[&forward]);
    let host = FakeHost::new();
    let probe = DnsProbe::new(DnsConfig {
        targets: vec![
            "www.broken.example.".into(),
            "missing.default.svc.cluster.local.".into(),
        ],
        ..config(&dns.addr.to_string())
    });
    let (_, findings) = run(&probe, &host);
    let found: Vec<_> = findings
        .iter()
        .filter(|f| f.subject.contains("via udp://"))
        .map(|f| (f.check.as_str(), f.message.as_str()))
        .collect();
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found
            .iter()
            .any(|(c, m)| *c == "dns.failing" && m.contains("SERVFAIL for www.broken.example.")),
        "{found:?}"
    );
    assert!(
        found.iter().any(|(c, m)| *c == "dns.failing"
            && m.contains("NXDOMAIN for missing.default.svc.cluster.local.")),
        "{found:?}"
    );
}

#[test]
fn slow_answers_are_slow_and_udp_only_servers_refuse_tcp() {
    let dns = Dnsmasq::start("127.0.0.45", &[]);
    let slow = DnsStub::start(
        "127.0.0.46",
        StubMode::Forward {
            upstream: dns.addr,
            delay: Duration::from_millis(300),
            drop_every: 0,
        },
    );
    let host = FakeHost::new();
    // 300 ms answers, well inside a 2 s deadline even on a busy machine.
    let probe = DnsProbe::new(DnsConfig {
        tcp_every: 1,
        query_timeout: Duration::from_secs(2),
        ..config(&slow.addr.to_string())
    });
    let mut findings = Vec::new();
    for _ in 0..3 {
        findings = run(&probe, &host).1;
    }
    let found = checks(&findings);
    let udp_api = format!("{API} via udp://{}", slow.addr);
    let tcp = format!("tcp://{}", slow.addr);
    assert!(
        found.contains(&("dns.slow", Severity::Warning, udp_api.as_str())),
        "{found:?}"
    );
    assert!(
        found.contains(&("dns.unreachable", Severity::Critical, tcp.as_str())),
        "{found:?}"
    );
    assert_eq!(found.len(), 2, "{found:?}");
}

#[test]
fn isolated_lost_answers_are_the_conntrack_race_pattern() {
    let dns = Dnsmasq::start("127.0.0.47", &[]);
    let lossy = DnsStub::start(
        "127.0.0.48",
        StubMode::Forward {
            upstream: dns.addr,
            delay: Duration::ZERO,
            drop_every: 4,
        },
    );
    let host = FakeHost::new();
    let probe = DnsProbe::new(DnsConfig {
        query_timeout: Duration::from_millis(200),
        ..config(&lossy.addr.to_string())
    });
    let mut findings = Vec::new();
    for _ in 0..8 {
        findings = run(&probe, &host).1;
    }
    // The first cycle also asked over TCP, which the UDP-only stub refuses.
    assert_eq!(
        checks(&findings),
        [
            (
                "dns.timeouts_5s",
                Severity::Warning,
                format!("{API} via udp://{}", lossy.addr).as_str()
            ),
            (
                "dns.unreachable",
                Severity::Critical,
                format!("tcp://{}", lossy.addr).as_str()
            ),
        ]
    );
    assert!(
        findings[0].message.contains("2 of 8 queries")
            && findings[0].message.contains("single-request-reopen"),
        "{}",
        findings[0].message
    );
}

#[test]
fn kubelet_config_and_a_bad_pod_resolv_conf() {
    let dns = Dnsmasq::start("127.0.0.49", &[]);
    let host = FakeHost::new();
    host.write("/var/lib/kubelet/config.yaml", "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nclusterDNS:\n- 127.0.0.49\nclusterDomain: cluster.local\n");
    host.write(
        "/etc/resolv.conf",
        "nameserver 10.0.0.2\nsearch ec2.internal\n",
    );
    host.write(
        "/var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/0123abcd/resolv.conf",
        "nameserver 127.0.0.49\nnameserver 127.0.0.51\nnameserver 127.0.0.52\nnameserver 127.0.0.53\nsearch default.svc.cluster.local svc.cluster.local cluster.local ec2.internal\noptions ndots:5\n",
    );
    // No nameservers configured: the kubelet's clusterDNS is asked, on the test's port;
    // the pod's loopback nameservers are flagged, not asked.
    let probe = DnsProbe::new(DnsConfig {
        port: dns.addr.port(),
        nameservers: vec![],
        search_every: 1,
        ..config("")
    });
    let (section, findings) = run(&probe, &host);
    assert_eq!(section.cluster_dns, ["127.0.0.49"]);
    let asked: Vec<&str> = section
        .probes
        .iter()
        .map(|p| p.nameserver.as_str())
        .collect();
    assert_eq!(
        asked,
        [dns.addr.to_string(), dns.addr.to_string()],
        "UDP and TCP to clusterDNS only"
    );
    assert_eq!(section.probes[0].last_outcome, "NOERROR");
    let pod = section.pod.unwrap();
    assert_eq!(
        (pod.ndots, pod.queries_per_external_lookup_with_aaaa),
        (5, 10)
    );
    assert_eq!(
        section.search_lookup.unwrap().resolved_as,
        "kubernetes.default.svc.cluster.local"
    );
    assert_eq!(section.node.unwrap().nameservers, ["10.0.0.2"]);

    let pod_path = "/var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/0123abcd/resolv.conf";
    assert_eq!(
        checks(&findings),
        [("dns.config", Severity::Critical, pod_path)]
    );
    let m = &findings[0].message;
    assert!(
        m.contains("4 nameservers")
            && m.contains("ignore 127.0.0.53")
            && m.contains("127.0.0.49 is loopback")
            && m.contains("cost 10 queries"),
        "{m}"
    );
}

#[test]
fn a_name_whose_upstream_is_dead_fails_while_the_server_answers() {
    // Nothing listens on the upstream: dnsmasq gets no answer for dead.example and gives none.
    let dead = std::net::UdpSocket::bind("127.0.0.54:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let forward = format!("--server=/dead.example/{}#{}", dead.ip(), dead.port());
    let dns = Dnsmasq::start("127.0.0.55", &[&forward]);
    let host = FakeHost::new();
    let probe = DnsProbe::new(DnsConfig {
        targets: vec![API.into(), "www.dead.example.".into()],
        query_timeout: Duration::from_millis(300),
        ..config(&dns.addr.to_string())
    });
    let mut findings = Vec::new();
    for _ in 0..3 {
        findings = run(&probe, &host).1;
    }
    let udp: Vec<_> = findings
        .iter()
        .filter(|f| f.subject.contains("udp://"))
        .collect();
    assert_eq!(udp.len(), 1, "{findings:?}");
    assert_eq!(
        (udp[0].check.as_str(), udp[0].subject.as_str()),
        (
            "dns.failing",
            format!("www.dead.example. via udp://{}", dns.addr).as_str()
        )
    );
    assert!(
        udp[0].message.contains("while it answers other names"),
        "{}",
        udp[0].message
    );
}
