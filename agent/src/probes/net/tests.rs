use super::*;
use crate::testing::{FakeHost, fixture};

fn run_at(
    probe: &NetProbe,
    host: &FakeHost,
    secs: u64,
) -> (NetSection, Vec<(String, String, Severity)>) {
    let ctx = ProbeContext {
        host: host.root(),
        now: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + secs),
    };
    let out = probe.run(&ctx).unwrap();
    let Section::Net(s) = out.section else {
        panic!("not a net section")
    };
    let found = out
        .findings
        .into_iter()
        .map(|f| (f.check.clone(), f.subject.clone(), f.severity()))
        .collect();
    (s, found)
}

#[test]
fn a_healthy_node_shows_its_nic_and_default_route() {
    let host = FakeHost::new();
    // Pods' veth pairs and the CNI bridge are left out; the NIC is in.
    host.set_link("veth1a2b3c", false, "up", Some(true));
    host.set_link("cni0", false, "up", Some(true));
    let (s, found) = run_at(&NetProbe::new(NetConfig::default()), &host, 0);
    assert_eq!(s.default_route_interfaces, ["eth0"]);
    let names: Vec<&str> = s.interfaces.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["eth0"]);
    let eth0 = &s.interfaces[0];
    assert!(eth0.physical && eth0.default_route && eth0.admin_up);
    assert_eq!((eth0.carrier, eth0.rx_packets), (Some(true), 90_000));
    assert_eq!(found, []);
}

#[test]
fn the_default_route_without_carrier_is_critical() {
    let host = FakeHost::new();
    host.set_link("eth0", true, "down", Some(false));
    // A second NIC without a cable, not carrying the default route, is no finding.
    host.set_link("eth1", true, "down", Some(false));
    let (_, found) = run_at(&NetProbe::new(NetConfig::default()), &host, 0);
    assert_eq!(
        found,
        [("net.link_down".into(), "eth0".into(), Severity::Critical)]
    );
    // Configured down: no carrier file to read, still cut off.
    host.set_link("eth0", true, "down", None);
    let probe = NetProbe::new(NetConfig::default());
    let (s, found) = run_at(&probe, &host, 0);
    assert_eq!(s.interfaces[0].carrier, None);
    assert_eq!(found.len(), 1);
}

#[test]
fn losses_are_judged_over_the_window() {
    let host = FakeHost::new();
    let probe = NetProbe::new(NetConfig::default());
    let at = |secs, rx: [u64; 3]| {
        host.set_net_counters(&[("eth0", [rx[0], rx[1], rx[2], 80_000, 0, 0])]);
        run_at(&probe, &host, secs)
    };
    assert_eq!(at(0, [90_000, 0, 0]).1, []);
    // 10,000 packets and 150 errors + 50 drops in 2 minutes: 2% lost.
    let (s, found) = at(120, [100_000, 150, 50]);
    assert_eq!(
        found,
        [("net.errors".into(), "eth0".into(), Severity::Warning)]
    );
    let rx = s.interfaces[0].rx_loss_percent.unwrap();
    assert!((rx - 200.0 / 10_200.0 * 100.0).abs() < 1e-9, "{rx}");
    assert_eq!(s.interfaces[0].window_seconds, Some(120.0));
    // 10 minutes later with a clean stream: the bad minutes left the window.
    at(400, [500_000, 200, 50]);
    let (s, found) = at(720, [900_000, 200, 50]);
    assert_eq!(found, [], "{:?}", s.interfaces[0]);
    // Too few packets to judge: 3 of 10 lost is no verdict.
    let quiet = NetProbe::new(NetConfig::default());
    host.set_net_counters(&[("eth0", [10, 0, 0, 10, 0, 0])]);
    run_at(&quiet, &host, 0);
    host.set_net_counters(&[("eth0", [17, 3, 0, 10, 0, 0])]);
    let (s, found) = run_at(&quiet, &host, 60);
    assert_eq!((s.interfaces[0].rx_loss_percent, found), (None, vec![]));
    // The interface was made again (counters back to small numbers): start over.
    let (s, _) = at(840, [5, 0, 0]);
    assert_eq!(s.interfaces[0].window_seconds, None);
}

#[test]
fn a_real_bond_with_a_slave_down_is_degraded() {
    let host = FakeHost::new();
    host.set_link("bond0", false, "up", Some(true));
    host.write(
        "/proc/net/bonding/bond0",
        &fixture("net/bonding-8023ad-slave-down"),
    );
    let (s, found) = run_at(&NetProbe::new(NetConfig::default()), &host, 0);
    assert_eq!(s.bonds.len(), 1);
    assert_eq!(s.bonds[0].slaves.len(), 2);
    assert_eq!(
        found,
        [(
            "net.bond_degraded".into(),
            "bond0".into(),
            Severity::Warning
        )]
    );
    let probe = NetProbe::new(NetConfig::default());
    let ctx = ProbeContext {
        host: host.root(),
        now: SystemTime::now(),
    };
    let out = probe.run(&ctx).unwrap();
    assert!(
        out.findings[0]
            .message
            .contains("1 of 2 slaves: enp1s0f0 down"),
        "{}",
        out.findings[0].message
    );
    // A bond file that is not one is an error naming it, not a healthy bond.
    host.write("/proc/net/bonding/bond0", "garbage\n");
    let err = probe.run(&ctx).unwrap_err().to_string();
    assert!(err.contains("proc/net/bonding/bond0"), "{err}");
}

#[test]
fn configured_names_come_in_and_excluded_ones_stay_out() {
    let host = FakeHost::new();
    host.set_link("veth0", false, "up", Some(true));
    host.set_link("eth1", true, "up", Some(true));
    let config = NetConfig {
        include: vec!["veth0".into()],
        exclude: vec!["eth1".into()],
        ..NetConfig::default()
    };
    let (s, _) = run_at(&NetProbe::new(config), &host, 0);
    let names: Vec<&str> = s.interfaces.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["eth0", "veth0"]);
}

#[test]
fn default_routes_of_both_families() {
    let host = FakeHost::new();
    host.write(
        "/proc/net/ipv6_route",
        "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 ens5\n\
         00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200 lo\n",
    );
    let defaults = links::default_route_interfaces(&host.root()).unwrap();
    assert_eq!(defaults.into_iter().collect::<Vec<_>>(), ["ens5", "eth0"]);
}
