//! CPU cost and query count of DNS probe cycles against a local dnsmasq (started here, on
//! 127.0.0.50). Run: `cargo bench -p nodemedic-agent --bench dns` (needs dnsmasq).

use std::time::SystemTime;

use nodemedic_agent::{
    config::DnsConfig,
    probes::dns::DnsProbe,
    probes::{Probe, ProbeContext, Section},
    testing::{Dnsmasq, FakeHost},
};

fn cpu_time() -> std::time::Duration {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn measure(name: &str, config: DnsConfig, host: &FakeHost) {
    let probe = DnsProbe::new(config);
    let ctx = ProbeContext {
        host: host.root(),
        now: SystemTime::now(),
    };
    let cycles = 600u32;
    let (cpu0, wall0) = (cpu_time(), std::time::Instant::now());
    let mut queries = 0u64;
    for _ in 0..cycles {
        let out = probe.run(&ctx).expect("the probe runs");
        let Section::Dns(d) = out.section else {
            unreachable!()
        };
        queries += u64::from(d.queries_sent);
        assert!(out.findings.is_empty(), "{:?}", out.findings);
    }
    let cpu = cpu_time() - cpu0;
    let per_cycle = cpu.as_secs_f64() * 1e3 / f64::from(cycles);
    println!("dns probe, {name}: {cycles} cycles");
    println!(
        "  queries per cycle:   {:>7.2}",
        queries as f64 / f64::from(cycles)
    );
    println!("  cpu time per cycle:  {per_cycle:>7.3} ms (this process: the probe, not dnsmasq)");
    println!(
        "  cpu time per query:  {:>7.3} ms",
        cpu.as_secs_f64() * 1e3 / queries as f64
    );
    println!(
        "  wall time per cycle: {:>7.3} ms",
        wall0.elapsed().as_secs_f64() * 1e3 / f64::from(cycles)
    );
}

fn main() {
    let dns = Dnsmasq::start("127.0.0.50", &[]);
    let host = FakeHost::new();
    let ns = vec![dns.addr.to_string()];
    measure(
        "4 queries a cycle (2 names, UDP and TCP)",
        DnsConfig {
            nameservers: ns.clone(),
            targets: vec![
                "kubernetes.default.svc.cluster.local.".into(),
                "a.kubernetes.default.svc.cluster.local.".into(),
            ],
            tcp_every: 1,
            search_every: 1_000_000,
            ..DnsConfig::default()
        },
        &host,
    );
    measure(
        "defaults (1 name; TCP and search list every 6th cycle)",
        DnsConfig {
            nameservers: ns,
            ..DnsConfig::default()
        },
        &host,
    );
}
