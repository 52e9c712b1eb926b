//! Test support (feature `test-support`): the shared real fixtures, and fake host trees
//! that the probes read like a node's `/`.

use std::path::PathBuf;

use nodemedic_proto::v1::NodeReport;

use crate::host::HostRoot;

/// The captured real files in `tests/fixtures/real/` (their origins and licences in its
/// `SOURCES.md`). Panics, never skips, when they are missing.
pub fn fixtures_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/real");
    assert!(
        dir.is_dir(),
        "real fixtures not found at {}: they are part of the repository",
        dir.display()
    );
    dir
}

/// The text of a real fixture, by its path under `fixtures/real`.
pub fn fixture(rel: &str) -> String {
    let path = fixtures_dir().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// A temporary tree that looks like a healthy node's `/` to the probes: 8 GiB of memory
/// with half available, no swap, small kernel tables, and one filesystem mounted at `/`: a
/// 1 GiB tmpfs of the tree's own, nearly empty, so the disk probe's view of it does not
/// depend on how full the machine running the tests is. Needs root (tests run as root);
/// panics, never skips, without it.
pub struct FakeHost {
    dir: tempfile::TempDir,
}

impl Drop for FakeHost {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

const GIB_KB: u64 = 1024 * 1024;

impl FakeHost {
    /// A healthy node.
    pub fn new() -> Self {
        let host = FakeHost {
            dir: tempfile::tempdir().expect("temporary directory"),
        };
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1g,nr_inodes=100000", "tmpfs"])
            .arg(host.dir.path())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            mounted,
            "cannot mount the fake host's tmpfs: the tests run as root (scripts/test checks)"
        );
        host.set_memory(8 * GIB_KB, 4 * GIB_KB, 0, 0);
        host.write("/proc/vmstat", "nr_free_pages 1000\noom_kill 0\n");
        host.write("/proc/pressure/memory", "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n");
        host.write("/proc/pressure/cpu", "some avg10=1.00 avg60=0.50 avg300=0.20 total=100\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n");
        host.write("/proc/loadavg", "0.10 0.20 0.30 1/300 4242\n");
        host.write("/proc/uptime", "12345.67 20000.00\n");
        host.write("/proc/sys/kernel/pid_max", "4194304\n");
        host.write("/proc/sys/kernel/osrelease", "6.1.0-test\n");
        host.write("/proc/sys/fs/file-nr", "3000\t0\t9223372036854775807\n");
        host.set_mounts(&[]);
        // A quiet kernel log (the kernel probe reads it when the tree has no /dev/kmsg).
        host.write("/var/log/kern.log", "");
        host
    }

    /// The host root the probes read.
    pub fn root(&self) -> HostRoot {
        HostRoot::new(self.dir.path())
    }

    /// Writes a file at a host path, creating its directories.
    pub fn write(&self, host_path: &str, text: &str) {
        let path = self.root().path(host_path);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("create dirs");
        std::fs::write(&path, text).expect("write fake host file");
    }

    /// Sets /proc/meminfo, in KiB as the kernel writes it: every line a 6.1 kernel writes
    /// (procfs-core's parser wants them all), free memory as available, the rest zero.
    pub fn set_memory(
        &self,
        total_kb: u64,
        available_kb: u64,
        swap_total_kb: u64,
        swap_free_kb: u64,
    ) {
        let lines = [
            ("MemTotal", total_kb),
            ("MemFree", available_kb),
            ("MemAvailable", available_kb),
            ("Buffers", 0),
            ("Cached", 0),
            ("SwapCached", 0),
            ("Active", 0),
            ("Inactive", 0),
            ("Active(anon)", 0),
            ("Inactive(anon)", 0),
            ("Active(file)", 0),
            ("Inactive(file)", 0),
            ("Unevictable", 0),
            ("Mlocked", 0),
            ("SwapTotal", swap_total_kb),
            ("SwapFree", swap_free_kb),
            ("Zswap", 0),
            ("Zswapped", 0),
            ("Dirty", 0),
            ("Writeback", 0),
            ("AnonPages", 0),
            ("Mapped", 0),
            ("Shmem", 0),
            ("KReclaimable", 0),
            ("Slab", 0),
            ("SReclaimable", 0),
            ("SUnreclaim", 0),
            ("KernelStack", 0),
            ("PageTables", 0),
            ("SecPageTables", 0),
            ("NFS_Unstable", 0),
            ("Bounce", 0),
            ("WritebackTmp", 0),
            ("CommitLimit", total_kb / 2 + swap_total_kb),
            ("Committed_AS", 0),
            ("VmallocTotal", 34_359_738_367),
            ("VmallocUsed", 0),
            ("VmallocChunk", 0),
            ("Percpu", 0),
            ("HardwareCorrupted", 0),
            ("AnonHugePages", 0),
        ];
        let mut text = String::new();
        for (key, kb) in lines {
            text.push_str(&format!("{:<16}{kb:>8} kB\n", format!("{key}:")));
        }
        text.push_str("HugePages_Total:       0\nHugePages_Free:        0\nHugePages_Rsvd:        0\nHugePages_Surp:        0\n");
        text.push_str("Hugepagesize:       2048 kB\nHugetlb:               0 kB\n");
        self.write("/proc/meminfo", &text);
    }

    /// Sets PID 1's mount table: `/` on the tree's own filesystem, plus `extra` mountinfo
    /// lines (whose mount points must exist under the tree to be measured).
    pub fn set_mounts(&self, extra: &[&str]) {
        let mut text = String::from("21 0 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n");
        text.push_str(
            "22 21 0:5 / /proc rw,nosuid,nodev,noexec,relatime shared:2 - proc proc rw\n",
        );
        for line in extra {
            text.push_str(line);
            text.push('\n');
        }
        self.write("/proc/1/mountinfo", &text);
    }
}

impl Default for FakeHost {
    fn default() -> Self {
        Self::new()
    }
}

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

/// Runs a command of the test's setup; panics with its output when it fails.
fn run(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("cannot run {cmd:?} ({e}): scripts/test installs docker.io and containerd")
    });
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Waits until `socket` accepts connections, or panics naming `what` and its log.
fn wait_for_socket(socket: &std::path::Path, what: &str, log: &std::path::Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::os::unix::net::UnixStream::connect(socket).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} did not listen on {} within 60s; its log:\n{}",
            socket.display(),
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Stops a daemon the way its service manager would (SIGTERM), so it cleans up its mounts.
fn terminate(child: &mut std::process::Child) {
    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A real Docker engine of the test's own: `dockerd` with its data root, exec root and
/// socket under `dir` (a temporary directory, or a tmpfs the test mounted to fill), no
/// bridge and no iptables changes. Stopped on drop. Panics, never skips, when dockerd is
/// not installed (scripts/test installs docker.io).
pub struct Dockerd {
    child: std::process::Child,
    /// Its API socket.
    pub socket: PathBuf,
    /// Its data root (`DockerRootDir`).
    pub data_root: PathBuf,
}

impl Dockerd {
    /// Starts dockerd under `dir` and waits until its API answers.
    pub fn start(dir: &std::path::Path) -> Self {
        std::fs::create_dir_all(dir).expect("the engine's directory");
        let socket = dir.join("docker.sock");
        let data_root = dir.join("data");
        let log = dir.join("dockerd.log");
        let child = std::process::Command::new("dockerd")
            .arg("--data-root")
            .arg(&data_root)
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .arg("--host")
            .arg(format!("unix://{}", socket.display()))
            .args(["--bridge", "none", "--iptables=false", "--ip-masq=false"])
            .stdout(std::fs::File::create(&log).expect("dockerd log"))
            .stderr(std::fs::File::create(dir.join("dockerd.err")).expect("dockerd log"))
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start dockerd ({e}): install docker.io (scripts/test does)")
            });
        let engine = Dockerd {
            child,
            socket,
            data_root,
        };
        wait_for_socket(&engine.socket, "dockerd", &dir.join("dockerd.err"));
        // The socket accepts before the API is ready: wait for an answer.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !std::process::Command::new("docker")
            .arg("-H")
            .arg(format!("unix://{}", engine.socket.display()))
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            assert!(
                std::time::Instant::now() < deadline,
                "dockerd did not answer within 60s"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        engine
    }

    /// Runs the docker CLI against this engine; its output.
    pub fn docker(&self, args: &[&str]) -> String {
        run(std::process::Command::new("docker")
            .arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .args(args))
    }

    /// Makes an image `FROM scratch` of one layer holding `bytes` random bytes (no
    /// registry is reachable), named `name`; its id.
    pub fn image(&self, name: &str, bytes: usize) -> String {
        let dir = random_blob(bytes);
        let tar = dir.path().join("layer.tar");
        run(std::process::Command::new("tar")
            .arg("-cf")
            .arg(&tar)
            .arg("-C")
            .arg(dir.path())
            .arg("blob"));
        self.docker(&["import", &tar.to_string_lossy(), name])
    }

    /// Builds `FROM scratch` with BuildKit (which leaves build cache behind) from a context
    /// of `bytes` random bytes; the image id. Uses the Docker CLI of the docker.io package,
    /// which has BuildKit built in.
    pub fn build(&self, name: &str, bytes: usize) -> String {
        let dir = random_blob(bytes);
        std::fs::write(
            dir.path().join("Dockerfile"),
            "FROM scratch\nCOPY blob /blob\n",
        )
        .expect("write the Dockerfile");
        run(std::process::Command::new("/usr/bin/docker")
            .env("DOCKER_BUILDKIT", "1")
            .arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .args(["build", "-q", "-t", name])
            .arg(dir.path()))
    }
}

/// A temporary directory holding `blob`: `bytes` random bytes, so no two images made from
/// one share their layer.
fn random_blob(bytes: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut blob = vec![0u8; bytes];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").expect("/dev/urandom"),
        &mut blob,
    )
    .expect("random bytes");
    std::fs::write(dir.path().join("blob"), blob).expect("write the blob");
    dir
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

/// A real containerd with its CRI plugin, of the test's own: root, state and socket under
/// `dir`. Stopped on drop. Panics, never skips, when containerd is not installed
/// (scripts/test installs it).
pub struct Containerd {
    child: std::process::Child,
    /// Its gRPC socket (CRI and containerd's own API).
    pub socket: PathBuf,
}

impl Containerd {
    /// Starts containerd under `dir` and waits for its socket. Its CRI sandbox image is
    /// [`BUSYBOX_IMAGE`], and it keeps the OOM score it is given (`restrict_oom_score_adj`):
    /// runc cannot lower a sandbox's score to the kubelet's -998 inside this machine's own
    /// container, and fails with "can't get final child's PID from pipe" if asked to.
    pub fn start(dir: &std::path::Path) -> Self {
        std::fs::create_dir_all(dir).expect("the runtime's directory");
        let socket = dir.join("containerd.sock");
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "version = 2\nroot = \"{}\"\nstate = \"{}\"\n[grpc]\n  address = \"{}\"\n[ttrpc]\n  address = \"{}\"\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"{BUSYBOX_IMAGE}\"\n  restrict_oom_score_adj = true\n",
                dir.join("root").display(),
                dir.join("state").display(),
                socket.display(),
                dir.join("ttrpc.sock").display(),
            ),
        )
        .expect("containerd config");
        let log = dir.join("containerd.log");
        let child = std::process::Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).expect("containerd log"))
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start containerd ({e}): install containerd (scripts/test does)")
            });
        let runtime = Containerd { child, socket };
        wait_for_socket(&runtime.socket, "containerd", &log);
        runtime
    }

    /// Imports a `docker save` archive into the `k8s.io` namespace, where the CRI lists it.
    pub fn import(&self, archive: &std::path::Path) {
        run(std::process::Command::new("ctr")
            .arg("-a")
            .arg(&self.socket)
            .args(["-n", "k8s.io", "images", "import"])
            .arg(archive));
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

/// The image every [`CriPod`] runs, sandbox ("pause") and containers alike: Debian's static
/// busybox, packed `FROM scratch` (no registry is reachable). Its name is the sandbox image
/// in [`Containerd`]'s config.
pub const BUSYBOX_IMAGE: &str = "nodemedic.test/busybox:1";

/// A pod started through the CRI the way the kubelet starts one: a sandbox under a cgroup
/// parent, then containers with the kubelet's `io.kubernetes.*` labels and a memory limit,
/// on the host's network (pods get no CNI networking here). Removed, with its cgroups, on
/// drop.
pub struct CriPod {
    socket: PathBuf,
    sandbox_id: String,
    cgroup_parent: String,
    /// The containers' IDs, in the order they were asked for.
    pub container_ids: Vec<String>,
}

/// What a [`CriPod`] is: the pod's metadata and its containers (name, memory limit).
pub struct CriPodSpec<'a> {
    /// The pod's namespace.
    pub namespace: &'a str,
    /// The pod's name.
    pub name: &'a str,
    /// The pod's UID.
    pub uid: &'a str,
    /// The cgroupfs parent, e.g. `/kubepods/burstable/pod<uid>`.
    pub cgroup_parent: &'a str,
    /// Its containers: name and memory limit in bytes.
    pub containers: &'a [(&'a str, u64)],
}

impl Containerd {
    /// Loads [`BUSYBOX_IMAGE`], made by `engine`, into this runtime's `k8s.io` namespace.
    pub fn load_busybox(&self, engine: &Dockerd) {
        let dir = tempfile::tempdir().expect("temporary directory");
        std::fs::create_dir(dir.path().join("bin")).expect("mkdir bin");
        std::fs::copy("/bin/busybox", dir.path().join("bin/busybox"))
            .expect("/bin/busybox (Debian's busybox-static; scripts/test installs it)");
        let layer = dir.path().join("layer.tar");
        run(std::process::Command::new("tar")
            .arg("-cf")
            .arg(&layer)
            .arg("-C")
            .arg(dir.path())
            .arg("bin"));
        engine.docker(&[
            "import",
            "--change",
            r#"ENTRYPOINT ["/bin/busybox", "sleep", "3600"]"#,
            &layer.to_string_lossy(),
            BUSYBOX_IMAGE,
        ]);
        let archive = dir.path().join("busybox.tar");
        engine.docker(&["save", "-o", &archive.to_string_lossy(), BUSYBOX_IMAGE]);
        self.import(&archive);
    }

    /// Starts `spec` through the CRI (after [`Containerd::load_busybox`]).
    pub fn run_pod(&self, spec: &CriPodSpec) -> CriPod {
        use crate::probes::images::cri;
        use nodemedic_proto::cri::{
            ContainerConfig, ContainerMetadata, CreateContainerRequest, ImageSpec,
            LinuxContainerConfig, LinuxContainerResources, LinuxPodSandboxConfig,
            LinuxSandboxSecurityContext, NamespaceMode, NamespaceOption, PodSandboxConfig,
            PodSandboxMetadata, RunPodSandboxRequest, StartContainerRequest,
            runtime_service_client::RuntimeServiceClient,
        };
        let labels = |container: Option<&str>| {
            let mut labels = std::collections::HashMap::from([
                (
                    "io.kubernetes.pod.namespace".to_owned(),
                    spec.namespace.to_owned(),
                ),
                ("io.kubernetes.pod.name".to_owned(), spec.name.to_owned()),
                ("io.kubernetes.pod.uid".to_owned(), spec.uid.to_owned()),
            ]);
            if let Some(c) = container {
                labels.insert("io.kubernetes.container.name".to_owned(), c.to_owned());
            }
            labels
        };
        // No hostname: a host-network pod keeps the node's, as the kubelet does.
        let sandbox = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: spec.name.to_owned(),
                uid: spec.uid.to_owned(),
                namespace: spec.namespace.to_owned(),
                attempt: 0,
            }),
            labels: labels(None),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: spec.cgroup_parent.to_owned(),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        network: NamespaceMode::Node as i32,
                        pid: NamespaceMode::Pod as i32,
                        ipc: NamespaceMode::Pod as i32,
                    }),
                }),
            }),
            ..PodSandboxConfig::default()
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        rt.block_on(async {
            let channel = cri::connect(&self.socket, std::time::Duration::from_secs(10))
                .await
                .expect("connect to containerd's CRI");
            let mut client = RuntimeServiceClient::new(channel);
            let sandbox_id = client
                .run_pod_sandbox(RunPodSandboxRequest {
                    config: Some(sandbox.clone()),
                    runtime_handler: String::new(),
                })
                .await
                .expect("RunPodSandbox")
                .into_inner()
                .pod_sandbox_id;
            let mut pod = CriPod {
                socket: self.socket.clone(),
                sandbox_id,
                cgroup_parent: spec.cgroup_parent.to_owned(),
                container_ids: Vec::new(),
            };
            for (name, limit) in spec.containers {
                let config = ContainerConfig {
                    metadata: Some(ContainerMetadata {
                        name: (*name).to_owned(),
                        attempt: 0,
                    }),
                    image: Some(ImageSpec {
                        image: BUSYBOX_IMAGE.to_owned(),
                        ..ImageSpec::default()
                    }),
                    labels: labels(Some(name)),
                    linux: Some(LinuxContainerConfig {
                        resources: Some(LinuxContainerResources {
                            memory_limit_in_bytes: *limit as i64,
                        }),
                    }),
                    ..ContainerConfig::default()
                };
                let id = client
                    .create_container(CreateContainerRequest {
                        pod_sandbox_id: pod.sandbox_id.clone(),
                        config: Some(config),
                        sandbox_config: Some(sandbox.clone()),
                    })
                    .await
                    .expect("CreateContainer")
                    .into_inner()
                    .container_id;
                client
                    .start_container(StartContainerRequest {
                        container_id: id.clone(),
                    })
                    .await
                    .expect("StartContainer");
                pod.container_ids.push(id);
            }
            pod
        })
    }
}

impl Drop for CriPod {
    fn drop(&mut self) {
        use nodemedic_proto::cri::{
            RemovePodSandboxRequest, StopPodSandboxRequest,
            runtime_service_client::RuntimeServiceClient,
        };
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            let timeout = std::time::Duration::from_secs(10);
            let Ok(channel) = crate::probes::images::cri::connect(&self.socket, timeout).await
            else {
                return;
            };
            let mut client = RuntimeServiceClient::new(channel);
            let id = self.sandbox_id.clone();
            let _ = client
                .stop_pod_sandbox(StopPodSandboxRequest {
                    pod_sandbox_id: id.clone(),
                })
                .await;
            let _ = client
                .remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: id })
                .await;
        });
        // runc made the parent path in every v1 controller; the kubelet would remove it.
        let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") else {
            return;
        };
        for controller in controllers.flatten() {
            let mut dir = controller
                .path()
                .join(self.cgroup_parent.trim_start_matches('/'));
            while dir != controller.path() && std::fs::remove_dir(&dir).is_ok() {
                dir.pop();
            }
        }
    }
}

/// A real cgroup v1 memory cgroup at `/sys/fs/cgroup/memory/<path>` with a limit, for
/// tests that need the kernel's own counters and OOM kills (this machine has the v1 memory
/// controller; see `shared/ENVIRONMENT.md`). On drop its processes are killed and the
/// directories it created removed (shared parents that are still in use stay). Needs root;
/// panics, never skips, without the controller.
pub struct MemoryCgroup {
    created: Vec<PathBuf>,
    path: PathBuf,
}

impl MemoryCgroup {
    /// The v1 memory controller's mount.
    pub const ROOT: &str = "/sys/fs/cgroup/memory";

    /// Creates `path` (e.g. `kubepods/burstable/pod<uid>/<container id>`) and limits it
    /// to `limit_bytes`.
    pub fn create(path: &str, limit_bytes: u64) -> Self {
        let root = PathBuf::from(Self::ROOT);
        assert!(
            root.join("memory.limit_in_bytes").exists(),
            "no cgroup v1 memory controller at {}: these tests need one (see shared/ENVIRONMENT.md)",
            root.display()
        );
        let mut created = Vec::new();
        let mut dir = root;
        for part in path.split('/') {
            dir.push(part);
            if !dir.exists() {
                std::fs::create_dir(&dir)
                    .unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
                created.push(dir.clone());
            }
        }
        std::fs::write(dir.join("memory.limit_in_bytes"), limit_bytes.to_string())
            .expect("set memory.limit_in_bytes");
        MemoryCgroup { created, path: dir }
    }

    /// The cgroup's directory.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Runs `script` with `sh -c` inside the cgroup (it joins before it runs anything).
    pub fn spawn(&self, script: &str) -> std::process::Child {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "echo $$ > {}/cgroup.procs && {script}",
                self.path.display()
            ))
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("spawn sh")
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        for _ in 0..50 {
            let procs = std::fs::read_to_string(self.path.join("cgroup.procs")).unwrap_or_default();
            if procs.trim().is_empty() {
                break;
            }
            for pid in procs.lines() {
                let _ = std::process::Command::new("kill")
                    .args(["-9", pid])
                    .status();
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        for dir in self.created.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// A small HTTP server on loopback that plays the Kubernetes API server's list and watch
/// endpoints for pods, nodes and events (`/api/v1/{pods,nodes,events}`), with the objects
/// a test gives it (real objects recorded from clusters). Field selectors of the form
/// `a.b=value,c=value` are applied as the API server does; a watch streams what the test
/// changes after the list. The real `kube` client talks to it through a kubeconfig
/// ([`FakeApiServer::kubeconfig`]).
pub struct FakeApiServer {
    addr: std::net::SocketAddr,
    state: std::sync::Arc<ApiState>,
    task: tokio::task::JoinHandle<()>,
}

struct ApiState {
    objects: std::sync::Mutex<std::collections::BTreeMap<String, Vec<serde_json::Value>>>,
    changes: tokio::sync::broadcast::Sender<(String, serde_json::Value)>,
    version: std::sync::atomic::AtomicU64,
    /// Requests answered 403 Forbidden before the real answer (RBAC not yet in place).
    refuse_next: std::sync::atomic::AtomicU32,
}

impl FakeApiServer {
    /// Starts serving on 127.0.0.1 on the current tokio runtime, with no objects.
    pub async fn start() -> Self {
        use axum::{Router, routing::get};
        let (changes, _) = tokio::sync::broadcast::channel(1024);
        let state = std::sync::Arc::new(ApiState {
            objects: std::sync::Mutex::default(),
            changes,
            version: std::sync::atomic::AtomicU64::new(1),
            refuse_next: std::sync::atomic::AtomicU32::new(0),
        });
        let app = Router::new()
            .route("/api/v1/{kind}", get(api_get))
            .with_state(std::sync::Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake API server");
        let addr = listener.local_addr().expect("its address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeApiServer { addr, state, task }
    }

    /// Sets the objects of a kind (`pods`, `nodes`, `events`) a list returns.
    pub fn set(&self, kind: &str, items: Vec<serde_json::Value>) {
        self.state.lock().insert(kind.to_owned(), items);
    }

    /// Adds or replaces (by `metadata.uid`, else name) an object and tells the watches.
    pub fn apply(&self, kind: &str, object: serde_json::Value) {
        let id = |o: &serde_json::Value| {
            let m = &o["metadata"];
            if m["uid"].is_string() {
                m["uid"].clone()
            } else {
                m["name"].clone()
            }
        };
        let mut objects = self.state.lock();
        let items = objects.entry(kind.to_owned()).or_default();
        let kind_of_change = match items.iter_mut().find(|o| id(o) == id(&object)) {
            Some(existing) => {
                *existing = object.clone();
                "MODIFIED"
            }
            None => {
                items.push(object.clone());
                "ADDED"
            }
        };
        drop(objects);
        self.state
            .version
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let event = serde_json::json!({"type": kind_of_change, "object": object});
        let _ = self.state.changes.send((kind.to_owned(), event));
    }

    /// Answers the next `n` requests 403 Forbidden, as an API server does to a service
    /// account without its RBAC rules.
    pub fn refuse_next(&self, n: u32) {
        self.state
            .refuse_next
            .store(n, std::sync::atomic::Ordering::SeqCst);
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Writes a kubeconfig pointing at the server into `dir`, and answers its path.
    pub fn kubeconfig(&self, dir: &std::path::Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n\
                 users:\n- name: agent\n  user:\n    token: test-token\n\
                 contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: agent\n\
                 current-context: fake\n",
                self.url()
            ),
        )
        .expect("write kubeconfig");
        path
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ApiState {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<String, Vec<serde_json::Value>>> {
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `a.b=value,c=value` against an object; a missing field is "".
fn selected(object: &serde_json::Value, selector: &str) -> bool {
    selector.split(',').filter(|s| !s.is_empty()).all(|term| {
        let (path, want) = term.split_once('=').unwrap_or((term, ""));
        let mut value = object;
        for part in path.split('.') {
            value = &value[part];
        }
        value.as_str().unwrap_or_default() == want
    })
}

async fn api_get(
    axum::extract::State(state): axum::extract::State<std::sync::Arc<ApiState>>,
    axum::extract::Path(kind): axum::extract::Path<String>,
    axum::extract::Query(query): axum::extract::Query<std::collections::BTreeMap<String, String>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    use futures::StreamExt;
    let refused = state
        .refuse_next
        .fetch_update(
            std::sync::atomic::Ordering::SeqCst,
            std::sync::atomic::Ordering::SeqCst,
            |n| n.checked_sub(1),
        )
        .is_ok();
    if refused {
        let status = serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("{kind} is forbidden: User \"system:serviceaccount:nodemedic:agent\" cannot list resource \"{kind}\" in API group \"\" at the cluster scope"),
            "reason": "Forbidden", "details": {"kind": kind}, "code": 403,
        });
        return (
            axum::http::StatusCode::FORBIDDEN,
            [("content-type", "application/json")],
            status.to_string(),
        )
            .into_response();
    }
    let selector = query.get("fieldSelector").cloned().unwrap_or_default();
    let watch = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    let version = state
        .version
        .load(std::sync::atomic::Ordering::SeqCst)
        .to_string();
    if watch {
        let changes = tokio_stream::wrappers::BroadcastStream::new(state.changes.subscribe());
        let lines = changes.filter_map(move |change| {
            let selector = selector.clone();
            let kind = kind.clone();
            async move {
                let (k, event) = change.ok()?;
                (k == kind && selected(&event["object"], &selector))
                    .then(|| Ok::<_, std::convert::Infallible>(format!("{event}\n")))
            }
        });
        return axum::response::Response::builder()
            .header("content-type", "application/json")
            .body(axum::body::Body::from_stream(lines))
            .expect("a response");
    }
    let items: Vec<serde_json::Value> = state
        .lock()
        .get(&kind)
        .map(|items| {
            items
                .iter()
                .filter(|o| selected(o, &selector))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let list_kind = match kind.as_str() {
        "pods" => "PodList",
        "nodes" => "NodeList",
        "events" => "EventList",
        _ => "List",
    };
    let body = serde_json::json!({
        "kind": list_kind,
        "apiVersion": "v1",
        "metadata": {"resourceVersion": version},
        "items": items,
    });
    ([("content-type", "application/json")], body.to_string()).into_response()
}

/// Report `seq` of a simulated node (`node` seeds its randomness) made from one real
/// collection: moves, in place, what differs between two real collections of a node, by
/// about as much as it moves between two collections of this machine 10 s apart (measured:
/// BENCHMARKS.md, "Collector: 10,000 agents"). Bytes used on every mount grow; memory
/// available wanders by tens of MiB; pressure averages, open files and threads move a
/// little; uptime ticks; how long each probe took is new every time; a process's RSS
/// changes now and then. (Everything else — mount names, resolvers, images, the kernel —
/// stays, as it does on a node.)
pub fn drift(r: &mut NodeReport, node: u64, seq: u64) {
    // splitmix64: a different step for every number, the same for the same node and seq.
    let mut state = node.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ seq;
    let mut next = |range: u64| {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % range.max(1)
    };
    let wander = |value: u64, by: u64, next: &mut dyn FnMut(u64) -> u64| {
        value.saturating_add(next(2 * by)).saturating_sub(by)
    };
    if let Some(disk) = &mut r.disk {
        for m in &mut disk.mounts {
            let grown = seq * 24_576 + next(32_768);
            m.bytes_used = m.bytes_used.saturating_add(grown);
            m.bytes_available = m.bytes_available.saturating_sub(grown);
        }
    }
    if let Some(memory) = &mut r.memory {
        memory.available_bytes = wander(memory.available_bytes, 64 << 20, &mut next);
        for p in &mut memory.top_processes {
            if next(8) == 0 {
                p.rss_bytes = wander(p.rss_bytes, 1 << 20, &mut next) & !4095;
            }
        }
    }
    if let Some(system) = &mut r.system {
        system.pids_in_use = wander(system.pids_in_use, 2, &mut next);
        system.open_files = wander(system.open_files, 2, &mut next);
        system.uptime_seconds = system.uptime_seconds.saturating_add(seq * 10);
        if let Some(psi) = &mut system.cpu_pressure {
            psi.some_avg10 = next(200) as f64 / 100.0;
            psi.some_avg60 = next(200) as f64 / 100.0;
            psi.some_avg300 = next(400) as f64 / 100.0;
        }
    }
    if let Some(dns) = &mut r.dns {
        for p in &mut dns.probes {
            p.p50_ms = next(2000) as f64 / 1000.0;
            p.p95_ms = next(8000) as f64 / 1000.0;
            p.max_ms = next(20000) as f64 / 1000.0;
        }
    }
    for p in &mut r.probes {
        p.duration_micros = 50 + next(4_000);
    }
}
