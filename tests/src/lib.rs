//! Helpers for the end-to-end tests: find the built binaries and run them as processes.
//!
//! The binaries come from `cargo build --workspace --bins` (the test script builds them
//! first); a missing binary fails the test with that instruction, never skips it.

pub mod bench;
pub mod in_process;

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// The path of a workspace binary next to the test executable's profile directory.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .join(name);
    assert!(
        path.is_file(),
        "{} is not built: run `cargo build --workspace --bins` first (scripts/test does)",
        path.display()
    );
    path
}

/// A process killed when dropped.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `nodemedic-collector` serving `data_dir`, gRPC on `grpc_listen`, HTTP on a free port of
/// 127.0.0.1; more flags to add.
pub fn collector_command(data_dir: &Path, grpc_listen: &str) -> Command {
    collector_command_on(data_dir, grpc_listen, "127.0.0.1:0")
}

/// [`collector_command`] with its HTTP listener at `http_listen`.
fn collector_command_on(data_dir: &Path, grpc_listen: &str, http_listen: &str) -> Command {
    let mut cmd = Command::new(binary("nodemedic-collector"));
    cmd.args([
        "--grpc-listen",
        grpc_listen,
        "--http-listen",
        http_listen,
        "--data-dir",
    ])
    .arg(data_dir);
    cmd
}

/// A collector process on 127.0.0.1 with free ports.
pub struct CollectorProcess {
    /// The process.
    pub process: Process,
    /// `http://127.0.0.1:PORT` (`https://localhost:PORT` with TLS) of its gRPC listener.
    pub grpc_url: String,
    /// `127.0.0.1:PORT` of its HTTP listener.
    pub http_addr: String,
}

impl CollectorProcess {
    /// Starts `nodemedic-collector` on `data_dir` with its gRPC listener at `grpc_listen`
    /// (`127.0.0.1:0` for a free port), and waits for its listening line. Findings become
    /// incidents after 2 s (not the default 30 s), to keep tests short.
    pub fn start(data_dir: &Path, grpc_listen: &str) -> Self {
        Self::start_with(data_dir, grpc_listen, &["--insecure"])
    }

    /// [`CollectorProcess::start`] with `extra` flags instead of `--insecure`: with
    /// `--tls-cert`, its URL is `https://localhost:PORT` (the name its certificate has).
    pub fn start_with(data_dir: &Path, grpc_listen: &str, extra: &[&str]) -> Self {
        Self::start_on(data_dir, grpc_listen, "127.0.0.1:0", extra)
    }

    /// [`CollectorProcess::start_with`] with its HTTP listener at `http_listen` (a
    /// collector started again where a browser's page expects it).
    pub fn start_on(data_dir: &Path, grpc_listen: &str, http_listen: &str, extra: &[&str]) -> Self {
        let mut child = collector_command_on(data_dir, grpc_listen, http_listen)
            .args(["--incident-hold", "2s"])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start nodemedic-collector");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the listening line");
        let grpc = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("grpc="))
            .unwrap_or_else(|| panic!("no grpc= in the collector's first line: {line:?}"));
        let http = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("http="))
            .unwrap_or_else(|| panic!("no http= in the collector's first line: {line:?}"));
        let grpc_url = if extra.contains(&"--tls-cert") {
            let port = grpc.rsplit(':').next().unwrap_or_default();
            format!("https://localhost:{port}")
        } else {
            format!("http://{grpc}")
        };
        CollectorProcess {
            grpc_url,
            http_addr: http.to_owned(),
            process: Process(child),
        }
    }

    /// Kills the collector with SIGKILL, as a crash would.
    pub fn kill(mut self) {
        let _ = self.process.0.kill();
        let _ = self.process.0.wait();
    }
}

/// Runs `nodemedic` with `args`; answers (exit code, stdout).
pub fn cli(args: &[&str]) -> (i32, String) {
    let out = Command::new(binary("nodemedic"))
        .args(args)
        .output()
        .expect("run nodemedic");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !stderr.is_empty() {
        eprintln!("nodemedic {args:?} stderr: {stderr}");
    }
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).expect("UTF-8 output"),
    )
}

/// Polls `f` every 100 ms until it answers `Some`, for at most `within`.
pub fn eventually<T>(within: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts `nodemedic-agent` reporting every second as `node`, reading the host tree at
/// `host_root`, with `extra` flags.
pub fn agent(collector_url: &str, node: &str, host_root: &Path, extra: &[&str]) -> Process {
    Process(
        Command::new(binary("nodemedic-agent"))
            .args([
                "--collector",
                collector_url,
                "--node-name",
                node,
                "--interval",
                "1s",
                "--host-root",
            ])
            .arg(host_root)
            .args(extra)
            .env("RUST_LOG", "warn")
            // Node-only unless a test passes --kubeconfig: never the machine's cluster.
            .env_remove("KUBECONFIG")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .spawn()
            .expect("start nodemedic-agent"),
    )
}

/// Waits (at most `within`) until `GET path` on `addr` answers 200: a server a test started
/// is ready (`/-/ready` of Prometheus and Alertmanager).
pub fn until_ready(addr: &str, path: &str, within: Duration, what: &str) {
    eventually(within, what, || {
        let (status, _) = std::panic::catch_unwind(|| http_get(addr, path)).ok()?;
        (status == 200).then_some(())
    });
}

/// A loopback address no one listens on now (`127.0.0.1:PORT`), for a server a test starts.
pub fn free_loopback_addr() -> String {
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    free.local_addr().expect("its address").to_string()
}

/// The value of the sample `name` (with its labels, if any) in a Prometheus exposition.
pub fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// How often the collector refused for `reason`, per its `/metrics` text (0 when absent).
pub fn refused(metrics: &str, reason: &str) -> f64 {
    sample(
        metrics,
        &format!("nodemedic_refused_total{{reason=\"{reason}\"}}"),
    )
    .unwrap_or(0.0)
}

/// A plain HTTP/1.1 GET to `addr` (the tests' own loopback collector); answers (status,
/// body).
pub fn http_get(addr: &str, path: &str) -> (u16, Vec<u8>) {
    http_get_with(addr, path, "")
}

/// [`http_get`] with more request `headers` (each line ending in `\r\n`).
pub fn http_get_with(addr: &str, path: &str, headers: &str) -> (u16, Vec<u8>) {
    let (status, _, body) = http_request(addr, "GET", path, headers, "");
    (status, body)
}

/// A plain HTTP/1.1 request with `headers` (each line ending in `\r\n`) and `body`;
/// answers (status, the response's header lines, body).
pub fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> (u16, String, Vec<u8>) {
    let stream = std::net::TcpStream::connect(addr).expect("connect to the collector's HTTP port");
    exchange(stream, addr, &format!("{method} {path}"), headers, body)
}

/// An HTTPS GET to `addr` trusting the CA in `ca` (the collector's certificate names
/// `localhost`), with a bearer `token` when given; answers (status, body).
pub fn https_get(addr: &str, path: &str, ca: &Path, token: Option<&str>) -> (u16, Vec<u8>) {
    https_get_as(addr, path, ca, token, None)
}

/// [`https_get`] presenting the client certificate and key in `cert` (PEM files), as a
/// browser holding a role certificate does.
pub fn https_get_as(
    addr: &str,
    path: &str,
    ca: &Path,
    token: Option<&str>,
    cert: Option<(&Path, &Path)>,
) -> (u16, Vec<u8>) {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("read the CA") {
        roots.add(cert.expect("a PEM certificate")).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let config = match cert {
        Some((cert, key)) => config
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(cert)
                    .expect("read the client certificate")
                    .map(|c| c.expect("a PEM certificate"))
                    .collect(),
                PrivateKeyDer::from_pem_file(key).expect("read the client key"),
            )
            .expect("a usable client certificate"),
        None => config.with_no_client_auth(),
    };
    let conn = rustls::ClientConnection::new(
        std::sync::Arc::new(config),
        ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let tcp = std::net::TcpStream::connect(addr).expect("connect to the collector's HTTP port");
    let headers = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let (status, _, body) = exchange(
        rustls::StreamOwned::new(conn, tcp),
        addr,
        &format!("GET {path}"),
        &headers,
        "",
    );
    (status, body)
}

/// One HTTP/1.1 request (`METHOD PATH`) over `stream` with `headers` (each ending in
/// CRLF) and `body`; (status, response header lines, body).
fn exchange(
    mut stream: impl std::io::Read + std::io::Write,
    addr: &str,
    request: &str,
    headers: &str,
    body: &str,
) -> (u16, String, Vec<u8>) {
    write!(
        stream,
        "{request} HTTP/1.1\r\nHost: {addr}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    // A TLS peer that closes without close_notify is fine here: the body is complete.
    if let Err(e) = stream.read_to_end(&mut raw) {
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP response");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, head, body)
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("a chunk size");
        let size = usize::from_str_radix(std::str::from_utf8(&raw[..line_end]).unwrap().trim(), 16)
            .expect("a hex chunk size");
        raw = &raw[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

/// The seqs of `node`'s reports in the store at `data_dir`, in order. After a run that
/// loses nothing and stores nothing twice they are exactly 1..=n ([`assert_each_once`]).
pub fn stored_seqs(data_dir: &Path, node: &str) -> Vec<u64> {
    nodemedic_collector::store::Reader::open(data_dir)
        .expect("open the store")
        .history(node, 0)
        .expect("read the history")
        .iter()
        .map(|r| r.seq)
        .collect()
}

/// Asserts that `seqs` are 1..=n: every report stored once, none lost, in order.
pub fn assert_each_once(seqs: &[u64], what: &str) {
    let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(seqs, expected, "{what}: every report once, in order");
}

/// A tmpfs the test mounts (root), unmounted on drop.
pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. `32m`) on `dir`, which must exist.
    pub fn mount(dir: &Path, size: &str) -> Self {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "mount a tmpfs on {} (the tests run as root)",
            dir.display()
        );
        Tmpfs(dir.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The last seq the collector at `url` has stored for `node`, asked through the CLI
/// (`nodemedic node NODE -o json`); `None` while it cannot say.
pub fn last_seq(url: &str, node: &str) -> Option<u64> {
    let (code, out) = cli(&["--collector", url, "node", node, "-o", "json"]);
    if code != 0 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&out).ok()?;
    v["node"]["lastSeq"].as_str()?.parse().ok()
}

/// Runs `nodemedic-collector certs ARGS` (certificates as an operator makes them); panics
/// with its stderr when it fails.
pub fn certs(args: &[&str]) {
    let out = Command::new(binary("nodemedic-collector"))
        .arg("certs")
        .args(args)
        .output()
        .expect("run nodemedic-collector certs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
