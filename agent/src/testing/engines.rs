//! Real container engines of the test's own: `dockerd` and containerd with its CRI plugin,
//! each with its own root and socket, and pods started through the CRI as the kubelet does.

use std::path::PathBuf;

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
    /// Where its CRI plugin looks for CNI network configs: empty at start, so the runtime
    /// says NetworkReady=false until a test writes one.
    pub cni_conf_dir: PathBuf,
}

impl Containerd {
    /// Starts containerd under `dir` and waits for its socket. Its CRI sandbox image is
    /// [`BUSYBOX_IMAGE`], and it keeps the OOM score it is given (`restrict_oom_score_adj`):
    /// runc cannot lower a sandbox's score to the kubelet's -998 inside this machine's own
    /// container, and fails with "can't get final child's PID from pipe" if asked to. Its
    /// CNI directories are its own (pods run on the host's network, needing none).
    pub fn start(dir: &std::path::Path) -> Self {
        let cni_conf_dir = dir.join("cni/net.d");
        std::fs::create_dir_all(&cni_conf_dir).expect("the runtime's directories");
        let socket = dir.join("containerd.sock");
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "version = 2\nroot = \"{}\"\nstate = \"{}\"\n[grpc]\n  address = \"{}\"\n[ttrpc]\n  address = \"{}\"\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"{BUSYBOX_IMAGE}\"\n  restrict_oom_score_adj = true\n[plugins.\"io.containerd.grpc.v1.cri\".cni]\n  conf_dir = \"{}\"\n  bin_dir = \"{}\"\n",
                dir.join("root").display(),
                dir.join("state").display(),
                socket.display(),
                dir.join("ttrpc.sock").display(),
                cni_conf_dir.display(),
                dir.join("cni/bin").display(),
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
        let runtime = Containerd {
            child,
            socket,
            cni_conf_dir,
        };
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

/// What a [`CriPod`] is: the pod's metadata and its containers.
pub struct CriPodSpec<'a> {
    /// The pod's namespace.
    pub namespace: &'a str,
    /// The pod's name.
    pub name: &'a str,
    /// The pod's UID.
    pub uid: &'a str,
    /// The cgroupfs parent, e.g. `/kubepods/burstable/pod<uid>`.
    pub cgroup_parent: &'a str,
    /// Its containers.
    pub containers: &'a [CriContainer<'a>],
}

/// One container of a [`CriPodSpec`]: busybox sleeping, or spinning on the CPU.
#[derive(Debug, Clone, Copy)]
pub struct CriContainer<'a> {
    /// Its name in the pod.
    pub name: &'a str,
    /// Its memory limit in bytes.
    pub memory_limit: u64,
    /// Its CPU limit as CFS quota and period in microseconds (`None`: unlimited).
    pub cpu_quota: Option<(i64, i64)>,
    /// Run a busy loop instead of sleeping.
    pub busy: bool,
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
        use crate::runtime::cri;
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
            for c in spec.containers {
                let (cpu_quota, cpu_period) = c.cpu_quota.unwrap_or((0, 0));
                let config = ContainerConfig {
                    metadata: Some(ContainerMetadata {
                        name: c.name.to_owned(),
                        attempt: 0,
                    }),
                    image: Some(ImageSpec {
                        image: BUSYBOX_IMAGE.to_owned(),
                        ..ImageSpec::default()
                    }),
                    command: if c.busy {
                        ["/bin/busybox", "sh", "-c", "while :; do :; done"]
                            .map(String::from)
                            .to_vec()
                    } else {
                        Vec::new()
                    },
                    labels: labels(Some(c.name)),
                    linux: Some(LinuxContainerConfig {
                        resources: Some(LinuxContainerResources {
                            cpu_period,
                            cpu_quota,
                            memory_limit_in_bytes: c.memory_limit as i64,
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
            let Ok(channel) = crate::runtime::cri::connect(&self.socket, timeout).await else {
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
