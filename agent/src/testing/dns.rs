//! Real DNS servers for the DNS probe's tests: dnsmasq on 127.0.0.x, and a small stub of
//! the tests' own (slow, lossy, SERVFAIL, UDP-only) to put in front of or behind it.

/// A real dnsmasq on `ip` and a free port (UDP and TCP), answering
/// `kubernetes.default.svc.cluster.local` with 10.96.0.1 and NXDOMAIN for other names under
/// `cluster.local`; more flags in `extra`. Killed on drop. Panics, never skips, when
/// dnsmasq is not installed (scripts/test installs it).
pub struct Dnsmasq {
    child: std::process::Child,
    /// Where it listens.
    pub addr: std::net::SocketAddr,
}

impl Dnsmasq {
    /// Starts dnsmasq and waits until it answers.
    pub fn start(ip: &str, extra: &[&str]) -> Self {
        let port = std::net::UdpSocket::bind((ip, 0))
            .expect("a free port")
            .local_addr()
            .unwrap()
            .port();
        let addr: std::net::SocketAddr = format!("{ip}:{port}").parse().unwrap();
        let child = std::process::Command::new("dnsmasq")
            .args(["--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--bind-interfaces"])
            .args(["--pid-file=", "--user=root", "--log-facility=/dev/null", "--local=/cluster.local/"])
            .args(["--address=/kubernetes.default.svc.cluster.local/10.96.0.1"])
            .arg(format!("--listen-address={ip}"))
            .arg(format!("--port={port}"))
            .args(extra)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start dnsmasq ({e}): install it (apt-get install dnsmasq-base; scripts/test does)"));
        let server = Dnsmasq { child, addr };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !matches!(
            crate::probes::dns::client::query(
                addr,
                "kubernetes.default.svc.cluster.local.",
                crate::probes::dns::client::Protocol::Udp,
                std::time::Duration::from_millis(200)
            ),
            crate::probes::dns::client::Outcome::Answered { .. }
        ) {
            assert!(
                std::time::Instant::now() < deadline,
                "dnsmasq on {addr} did not answer within 10s"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        server
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a [`DnsStub`] does with a query.
#[derive(Debug, Clone, Copy)]
pub enum StubMode {
    /// Forwards to `upstream` after `delay`, dropping every `drop_every`th query (0: none).
    Forward {
        /// The real server behind.
        upstream: std::net::SocketAddr,
        /// Added to every answer.
        delay: std::time::Duration,
        /// Every Nth query gets no answer at all.
        drop_every: u32,
    },
    /// Answers SERVFAIL to everything, like a broken upstream.
    ServFail,
}

/// A UDP-only DNS stub of the test's own (nothing listens on its TCP port): a slow or lossy
/// forwarder in front of a real server, or a broken upstream. Stops on drop.
pub struct DnsStub {
    /// Where it listens (UDP).
    pub addr: std::net::SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DnsStub {
    /// Starts the stub on `ip` and a free port.
    pub fn start(ip: &str, mode: StubMode) -> Self {
        use std::sync::atomic::Ordering;
        let socket = std::net::UdpSocket::bind((ip, 0)).expect("bind the stub");
        socket
            .set_read_timeout(Some(std::time::Duration::from_millis(50)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = std::sync::Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut count = 0u32;
            while !stopping.load(Ordering::Relaxed) {
                let Ok((n, client)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                count += 1;
                let request = buf[..n].to_vec();
                let reply = socket.try_clone().expect("clone the stub socket");
                match mode {
                    StubMode::ServFail => {
                        if let Some(answer) = servfail(&request) {
                            let _ = reply.send_to(&answer, client);
                        }
                    }
                    StubMode::Forward { drop_every, .. }
                        if drop_every > 0 && count.is_multiple_of(drop_every) => {}
                    StubMode::Forward {
                        upstream, delay, ..
                    } => {
                        std::thread::spawn(move || {
                            std::thread::sleep(delay);
                            let up = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                            up.set_read_timeout(Some(std::time::Duration::from_secs(2)))
                                .unwrap();
                            let _ = up.send_to(&request, upstream);
                            let mut answer = [0u8; 4096];
                            if let Ok((m, _)) = up.recv_from(&mut answer) {
                                let _ = reply.send_to(&answer[..m], client);
                            }
                        });
                    }
                }
            }
        });
        DnsStub {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

fn servfail(request: &[u8]) -> Option<Vec<u8>> {
    use hickory_proto::op::{Message, ResponseCode};
    let req = Message::from_vec(request).ok()?;
    let mut answer = Message::error_msg(
        req.metadata.id,
        req.metadata.op_code,
        ResponseCode::ServFail,
    );
    answer.queries = req.queries;
    answer.to_vec().ok()
}

impl Drop for DnsStub {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
