use std::{
    io::{BufRead, BufReader, Write},
    net::TcpListener,
    sync::{Arc, Mutex},
    time::SystemTime,
};

use super::*;
use crate::testing::FakeHost;

/// A stand-in for the kubelet's healthz listener on loopback (a kubelet cannot run here):
/// answers every `GET` with the status and body it is set to, as the kubelet's
/// `/healthz` does (`ok`, or `[-]name failed` lines with 500).
struct Healthz {
    address: String,
    answer: Arc<Mutex<(u16, &'static str)>>,
}

impl Healthz {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let answer = Arc::new(Mutex::new((200, "ok")));
        let shared = Arc::clone(&answer);
        std::thread::spawn(move || {
            for conn in listener.incoming().filter_map(Result::ok) {
                let mut request = String::new();
                let mut reader = BufReader::new(&conn);
                while reader.read_line(&mut request).is_ok_and(|n| n > 2) {}
                let (status, body) = *shared.lock().unwrap();
                let _ = write!(
                    &conn,
                    "HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Healthz { address, answer }
    }

    fn set(&self, status: u16, body: &'static str) {
        *self.answer.lock().unwrap() = (status, body);
    }
}

fn kubelet_config(host: &FakeHost, address: &str) {
    let (ip, port) = address.rsplit_once(':').unwrap();
    host.write(
        crate::kubelet::CONFIG_PATH,
        &format!("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nhealthzBindAddress: {ip}\nhealthzPort: {port}\n"),
    );
}

/// A process named kubelet in the tree's /proc that started `up` seconds before the
/// tree's uptime (12345.67 s): the machine's own stat line with its name and start time
/// changed.
fn kubelet_process(host: &FakeHost, up: f64) {
    let real = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after_name = &real[real.rfind(')').unwrap() + 2..];
    let mut fields: Vec<String> = after_name.split(' ').map(str::to_owned).collect();
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    // starttime is field 22 of the line, the 20th after the name.
    fields[19] = (((12345.67 - up) * ticks) as u64).to_string();
    host.write("/proc/4242/comm", "kubelet\n");
    host.write(
        "/proc/4242/stat",
        &format!("4242 (kubelet) {}", fields.join(" ")),
    );
}

fn run(probe: &ServicesProbe, host: &FakeHost) -> (ServicesSection, Vec<(String, Severity)>) {
    let out = probe
        .run(&ProbeContext {
            host: host.root(),
            now: SystemTime::now(),
        })
        .unwrap();
    let Section::Services(s) = out.section else {
        panic!("not a services section")
    };
    let found = out
        .findings
        .iter()
        .map(|f| (f.check.clone(), f.severity()))
        .collect();
    (s, found)
}

fn probe() -> ServicesProbe {
    ServicesProbe::new(ServicesConfig::default(), Sockets::default())
}

#[test]
fn a_node_without_a_kubelet_is_not_asked() {
    let host = FakeHost::new();
    let (s, found) = run(&probe(), &host);
    assert!(!s.kubelet_expected);
    assert_eq!((s.kubelet_answer.as_str(), found), ("", vec![]));
}

#[test]
fn three_failures_in_a_row_are_critical_and_one_answer_clears_them() {
    let host = FakeHost::new();
    let healthz = Healthz::start();
    kubelet_config(&host, &healthz.address);
    let probe = probe();
    let (s, found) = run(&probe, &host);
    assert!(s.kubelet_expected && s.kubelet_healthy, "{s:?}");
    assert_eq!(
        (s.kubelet_healthz.as_str(), found),
        (healthz.address.as_str(), vec![])
    );

    healthz.set(
        500,
        "[+]ping ok\n[-]syncloop failed: reason withheld\nhealthz check failed\n",
    );
    for n in 1..=2 {
        let (s, found) = run(&probe, &host);
        assert_eq!((s.kubelet_failures_in_a_row, found), (n, vec![]));
    }
    let (s, found) = run(&probe, &host);
    assert_eq!(
        found,
        [(
            checks::SERVICES_KUBELET_UNHEALTHY.into(),
            Severity::Critical
        )]
    );
    assert!(
        s.kubelet_answer
            .contains("HTTP 500: [+]ping ok [-]syncloop failed"),
        "{}",
        s.kubelet_answer
    );

    healthz.set(200, "ok");
    let (s, found) = run(&probe, &host);
    assert_eq!((s.kubelet_failures_in_a_row, found), (0, vec![]));
}

#[test]
fn a_kubelet_that_just_started_is_not_counted_and_a_dead_one_is() {
    let host = FakeHost::new();
    // The config names a port where nothing listens: the kubelet is not answering.
    let free = TcpListener::bind("127.0.0.1:0").unwrap();
    kubelet_config(&host, &free.local_addr().unwrap().to_string());
    drop(free);
    kubelet_process(&host, 30.0);
    let probe = probe();
    for _ in 0..4 {
        let (s, found) = run(&probe, &host);
        assert!((s.kubelet_up_seconds.unwrap() - 30.0).abs() < 1.0, "{s:?}");
        assert!(s.kubelet_answer.contains("refused"), "{}", s.kubelet_answer);
        assert_eq!((s.kubelet_failures_in_a_row, found), (0, vec![]));
    }
    // Up for two minutes and still not answering; then gone altogether.
    kubelet_process(&host, 120.0);
    for _ in 0..2 {
        run(&probe, &host);
    }
    std::fs::remove_dir_all(host.root().path("/proc/4242")).unwrap();
    let (s, found) = run(&probe, &host);
    assert_eq!(s.kubelet_up_seconds, None);
    assert_eq!(
        found,
        [(
            checks::SERVICES_KUBELET_UNHEALTHY.into(),
            Severity::Critical
        )]
    );
}

#[test]
fn the_configuration_says_whether_to_ask() {
    let host = FakeHost::new();
    let never = ServicesProbe::new(
        ServicesConfig {
            kubelet: Expect::Never,
            ..ServicesConfig::default()
        },
        Sockets::default(),
    );
    kubelet_process(&host, 500.0);
    assert!(!run(&never, &host).0.kubelet_expected);
    assert!(
        run(&probe(), &host).0.kubelet_expected,
        "a kubelet process is enough"
    );
    host.write(crate::kubelet::CONFIG_PATH, "healthzPort: 0\n");
    let (s, found) = run(&probe(), &host);
    assert!(
        s.kubelet_answer.contains("not asked") && found.is_empty(),
        "{s:?}"
    );
    assert!(
        crate::config::Config::parse("services:\n  kubelet_failures: 0\n")
            .unwrap_err()
            .contains("services.kubelet_failures")
    );
}
