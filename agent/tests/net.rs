//! The net probe on a real network namespace: a veth pair carrying a default route, raw
//! frames sent through it, its peer taken down. The kernel's own files of the namespace
//! (`/proc/net/*`, `/sys/class/net/*` as `ip netns exec` mounts them) are copied into a
//! fake host tree at each run. Needs root and iproute2; fails, never skips, without them.

use std::{
    process::Command,
    time::{Duration, SystemTime},
};

use nodemedic_agent::{
    probes::net::{NetConfig, NetProbe},
    probes::{Probe, ProbeContext, Section},
    testing::FakeHost,
};
use nodemedic_proto::v1::{NetSection, Severity};

/// A network namespace of the test's own, deleted on drop.
struct NetNs(String);

impl NetNs {
    fn new() -> Self {
        let ns = NetNs(format!("nodemedic-net-{}", std::process::id()));
        ns.ip(&["netns", "add", &ns.0]);
        for args in [
            "link add nmv0 type veth peer name nmv1",
            "link set nmv0 up",
            "link set nmv1 up",
            "addr add 10.99.0.1/24 dev nmv0",
            "route add default via 10.99.0.2 dev nmv0",
        ] {
            let mut all = vec!["-n", &ns.0];
            all.extend(args.split(' '));
            ns.ip(&all);
        }
        ns
    }

    fn ip(&self, args: &[&str]) {
        let status = Command::new("ip")
            .args(args)
            .status()
            .expect("run ip (iproute2)");
        assert!(status.success(), "ip {args:?} failed: the test needs root");
    }

    /// Runs `sh -c script` inside the namespace, with its own /sys.
    fn sh(&self, script: &str) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.0, "sh", "-c", script])
            .output()
            .expect("run ip netns exec");
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Sends `n` raw Ethernet frames of an unassigned type out of `dev`.
    fn send_frames(&self, dev: &str, n: u32) {
        let sent = self.sh(&format!(
            "python3 -c \"import socket; s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); \
             s.bind(('{dev}', 0)); f = b'\\xff' * 6 + b'\\x02\\0\\0\\0\\0\\x01' + b'\\x88\\xb5' + b'x' * 50; \
             print(sum(s.send(f) > 0 for _ in range({n})))\""
        ));
        assert_eq!(sent.trim(), n.to_string());
    }

    /// Copies the namespace's interface files into `host`'s tree, replacing its own.
    fn copy_into(&self, host: &FakeHost) {
        let root = host.root();
        let _ = std::fs::remove_dir_all(root.path("/sys/class/net"));
        for file in ["dev", "route", "ipv6_route"] {
            host.write(
                &format!("/proc/net/{file}"),
                &self.sh(&format!("cat /proc/net/{file}")),
            );
        }
        let listing = self.sh(
            "for i in /sys/class/net/*; do echo \"${i##*/} $(cat $i/operstate) $(cat $i/flags) \
             $(cat $i/carrier 2>/dev/null || echo -) $([ -e $i/device ] && echo device || echo none)\"; done",
        );
        for line in listing.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let base = format!("/sys/class/net/{}", f[0]);
            host.write(&format!("{base}/operstate"), f[1]);
            host.write(&format!("{base}/flags"), f[2]);
            if f[3] != "-" {
                host.write(&format!("{base}/carrier"), f[3]);
            }
            if f[4] == "device" {
                std::fs::create_dir_all(root.path(&format!("{base}/device"))).unwrap();
            }
        }
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn a_real_veth_pair_losing_frames_and_its_link() {
    let ns = NetNs::new();
    let host = FakeHost::new();
    // veth is virtual: left out unless named.
    let probe = NetProbe::new(NetConfig {
        include: vec!["nmv0".into(), "nmv1".into()],
        ..NetConfig::default()
    });
    let t0 = SystemTime::now();
    let run = |secs| {
        ns.copy_into(&host);
        let out = probe
            .run(&ProbeContext {
                host: host.root(),
                now: t0 + Duration::from_secs(secs),
            })
            .unwrap();
        let Section::Net(s) = out.section else {
            panic!("not a net section")
        };
        let found: Vec<(String, String, Severity, String)> = out
            .findings
            .iter()
            .map(|f| {
                let dir = f.text("direction").unwrap_or_default().to_owned();
                (f.check.clone(), f.subject.clone(), f.severity(), dir)
            })
            .collect();
        (s, found)
    };
    let by_name = |s: &NetSection, name: &str| {
        s.interfaces
            .iter()
            .find(|i| i.name == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} not looked at: {s:?}"))
    };

    let (s, found) = run(0);
    assert_eq!(s.default_route_interfaces, ["nmv0"]);
    assert_eq!(by_name(&s, "nmv0").carrier, Some(true));
    assert!(!by_name(&s, "nmv0").physical);
    assert_eq!(found, []);

    // Frames of a type no protocol takes: the peer receives and drops every one.
    ns.send_frames("nmv0", 2000);
    let (s, found) = run(60);
    let nmv1 = by_name(&s, "nmv1");
    assert!(nmv1.rx_dropped >= 2000, "{nmv1:?}");
    assert_eq!(
        found,
        [(
            "net.errors".into(),
            "nmv1".into(),
            Severity::Warning,
            "rx".into()
        )]
    );

    // The peer down: the default route's interface has no carrier, and what it sends is
    // dropped.
    ns.ip(&["-n", &ns.0, "link", "set", "nmv1", "down"]);
    ns.send_frames("nmv0", 2000);
    let (s, found) = run(120);
    let nmv0 = by_name(&s, "nmv0");
    assert_eq!(nmv0.carrier, Some(false));
    assert_eq!(nmv0.operstate, "lowerlayerdown");
    assert!(nmv0.tx_dropped >= 2000, "{nmv0:?}");
    assert!(
        found.contains(&(
            "net.link_down".into(),
            "nmv0".into(),
            Severity::Critical,
            String::new()
        )),
        "{found:?}"
    );
    assert!(
        found.contains(&(
            "net.errors".into(),
            "nmv0".into(),
            Severity::Warning,
            "tx".into()
        )),
        "{found:?}"
    );
    // The peer itself is configured down: the kernel will not say whether it has carrier.
    assert_eq!(by_name(&s, "nmv1").carrier, None);
}
