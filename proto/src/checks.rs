//! Every check a finding can name, defined once: the agent's probes emit them, the runbook
//! catalog must have a rule for each (its test iterates over [`ALL`]), and tooling can list
//! them. A check is `<family>.<name>`; the family is the probe that judges it (or `pod`,
//! `node`). A new check is a constant here, added to [`ALL`].

// The disk probe.
/// `disk.space`: bytes available on a filesystem.
pub const DISK_SPACE: &str = "disk.space";
/// `disk.inodes`: inodes free on a filesystem.
pub const DISK_INODES: &str = "disk.inodes";
/// `disk.readonly`: a filesystem the node writes to is read-only.
pub const DISK_READONLY: &str = "disk.readonly";
/// `disk.fill_rate`: a filesystem fills at a rate that makes it full soon.
pub const DISK_FILL_RATE: &str = "disk.fill_rate";
/// `disk.pvc_filling`: a PersistentVolumeClaim's volume is nearly full, or fills within days.
pub const DISK_PVC_FILLING: &str = "disk.pvc_filling";
/// `disk.io_pressure`: tasks stalled on I/O (PSI) for minutes.
pub const DISK_IO_PRESSURE: &str = "disk.io_pressure";

// The memory probe.
/// `memory.available`: MemAvailable against the kubelet's eviction line.
pub const MEMORY_AVAILABLE: &str = "memory.available";
/// `memory.pressure`: tasks stalled on memory (PSI).
pub const MEMORY_PRESSURE: &str = "memory.pressure";
/// `memory.oom_kills`: the kernel's OOM kill counter rose.
pub const MEMORY_OOM_KILLS: &str = "memory.oom_kills";
/// `memory.swap`: swap in use.
pub const MEMORY_SWAP: &str = "memory.swap";

// The system probe.
/// `system.pids`: PIDs against kernel.pid_max.
pub const SYSTEM_PIDS: &str = "system.pids";
/// `system.file_descriptors`: file handles against fs.file-max.
pub const SYSTEM_FILE_DESCRIPTORS: &str = "system.file_descriptors";
/// `system.conntrack`: conntrack entries against nf_conntrack_max.
pub const SYSTEM_CONNTRACK: &str = "system.conntrack";
/// `system.cpu_pressure`: tasks waiting for a CPU (PSI).
pub const SYSTEM_CPU_PRESSURE: &str = "system.cpu_pressure";

// The DNS probe.
/// `dns.unreachable`: a nameserver does not answer at all.
pub const DNS_UNREACHABLE: &str = "dns.unreachable";
/// `dns.failing`: a name does not resolve.
pub const DNS_FAILING: &str = "dns.failing";
/// `dns.slow`: answers are slow.
pub const DNS_SLOW: &str = "dns.slow";
/// `dns.timeouts_5s`: queries time out (the 5 s conntrack race).
pub const DNS_TIMEOUTS_5S: &str = "dns.timeouts_5s";
/// `dns.config`: resolv.conf is one the resolver mishandles.
pub const DNS_CONFIG: &str = "dns.config";

// The image probe.
/// `images.reclaimable`: unused images hold much of the image filesystem.
pub const IMAGES_RECLAIMABLE: &str = "images.reclaimable";
/// `images.dangling`: untagged images hold space.
pub const IMAGES_DANGLING: &str = "images.dangling";
/// `images.gc_imminent`: the kubelet's image GC is about to run.
pub const IMAGES_GC_IMMINENT: &str = "images.gc_imminent";
/// `images.runtime_unreachable`: a container runtime does not answer.
pub const IMAGES_RUNTIME_UNREACHABLE: &str = "images.runtime_unreachable";

// The kernel probe (the rules in `agent/kernel-rules/` emit these).
/// `kernel.oom_kill`: the kernel OOM-killed a process.
pub const KERNEL_OOM_KILL: &str = "kernel.oom_kill";
/// `kernel.hung_task`: a task blocked for more than 120 s.
pub const KERNEL_HUNG_TASK: &str = "kernel.hung_task";
/// `kernel.soft_lockup`: a CPU stuck in the kernel.
pub const KERNEL_SOFT_LOCKUP: &str = "kernel.soft_lockup";
/// `kernel.fs_error`: a filesystem reported an error.
pub const KERNEL_FS_ERROR: &str = "kernel.fs_error";
/// `kernel.readonly_remount`: a filesystem was remounted read-only.
pub const KERNEL_READONLY_REMOUNT: &str = "kernel.readonly_remount";
/// `kernel.io_error`: a block device reported an I/O error.
pub const KERNEL_IO_ERROR: &str = "kernel.io_error";
/// `kernel.conntrack_full`: the conntrack table dropped packets.
pub const KERNEL_CONNTRACK_FULL: &str = "kernel.conntrack_full";
/// `kernel.unregister_netdevice`: a network device cannot be freed.
pub const KERNEL_UNREGISTER_NETDEVICE: &str = "kernel.unregister_netdevice";
/// `kernel.oops`: a kernel oops or BUG.
pub const KERNEL_OOPS: &str = "kernel.oops";
/// `kernel.hardware_error`: the hardware reported an error (MCE, EDAC, CPER).
pub const KERNEL_HARDWARE_ERROR: &str = "kernel.hardware_error";
/// `kernel.panic`: the kernel panicked (seen in a log kept across the reboot).
pub const KERNEL_PANIC: &str = "kernel.panic";
/// `kernel.nic_tx_timeout`: a network card stopped sending (the netdev watchdog fired).
pub const KERNEL_NIC_TX_TIMEOUT: &str = "kernel.nic_tx_timeout";
/// `kernel.gpu_error`: an NVIDIA GPU reported an Xid error.
pub const KERNEL_GPU_ERROR: &str = "kernel.gpu_error";
/// `kernel.event`: a line matched a rule from a node-problem-detector file.
pub const KERNEL_EVENT: &str = "kernel.event";

// The pods probe.
/// `pod.crashloop`: a container in CrashLoopBackOff.
pub const POD_CRASHLOOP: &str = "pod.crashloop";
/// `pod.oomkilled`: a container was OOMKilled.
pub const POD_OOMKILLED: &str = "pod.oomkilled";
/// `pod.image_pull`: an image cannot be pulled.
pub const POD_IMAGE_PULL: &str = "pod.image_pull";
/// `pod.evicted`: a pod was evicted.
pub const POD_EVICTED: &str = "pod.evicted";
/// `pod.pending`: a pod cannot be scheduled.
pub const POD_PENDING: &str = "pod.pending";
/// `pod.config_error`: a container's configuration is missing (CreateContainerConfigError).
pub const POD_CONFIG_ERROR: &str = "pod.config_error";
/// `pod.terminating_stuck`: a pod stays Terminating.
pub const POD_TERMINATING_STUCK: &str = "pod.terminating_stuck";
/// `pod.probe_failing`: liveness or readiness probes fail.
pub const POD_PROBE_FAILING: &str = "pod.probe_failing";
/// `pod.restarts`: a container restarts often.
pub const POD_RESTARTS: &str = "pod.restarts";
/// `pod.stuck_creating`: a pod has waited in ContainerCreating or PodInitializing for long,
/// with the kubelet's sandbox, attach or mount failures.
pub const POD_STUCK_CREATING: &str = "pod.stuck_creating";
/// `cluster.quota_near_limit`: a namespace's ResourceQuota is nearly used up (the
/// collector's cluster view).
pub const CLUSTER_QUOTA_NEAR_LIMIT: &str = "cluster.quota_near_limit";
/// `cluster.quota_exceeded`: pods are refused for a namespace's quota (they never exist,
/// so no node sees them).
pub const CLUSTER_QUOTA_EXCEEDED: &str = "cluster.quota_exceeded";
/// `cluster.pvc_pending`: a claim stays Pending because its volume cannot be provisioned.
pub const CLUSTER_PVC_PENDING: &str = "cluster.pvc_pending";
/// `cluster.cert_expiry`: a TLS Secret's (or the collector's own) certificate expires soon.
pub const CLUSTER_CERT_EXPIRY: &str = "cluster.cert_expiry";
/// `cluster.cert_not_renewed`: a cert-manager Certificate is past its renewal time.
pub const CLUSTER_CERT_NOT_RENEWED: &str = "cluster.cert_not_renewed";
/// `node.condition`: a node condition says there is a problem.
pub const NODE_CONDITION: &str = "node.condition";
/// `node.not_found`: the API server has no Node of this agent's node name.
pub const NODE_NOT_FOUND: &str = "node.not_found";
/// `node.pods_capacity`: the node runs nearly as many pods as its kubelet allows.
pub const NODE_PODS_CAPACITY: &str = "node.pods_capacity";
/// `node.overcommitted`: its pods request more CPU or memory than it can give them.
pub const NODE_OVERCOMMITTED: &str = "node.overcommitted";
/// `node.cordoned`: the node has been unschedulable for long.
pub const NODE_CORDONED: &str = "node.cordoned";

// The cgroups probe.
/// `pod.memory_near_limit`: a working set near its memory limit.
pub const POD_MEMORY_NEAR_LIMIT: &str = "pod.memory_near_limit";
/// `pod.memory_throttled`: a cgroup hits its memory limit without an OOM kill yet.
pub const POD_MEMORY_THROTTLED: &str = "pod.memory_throttled";
/// `pod.cpu_throttled`: a container spends many CFS periods stopped at its CPU limit.
pub const POD_CPU_THROTTLED: &str = "pod.cpu_throttled";
/// `pod.oom_kills`: the kernel OOM-killed in a pod's cgroup.
pub const POD_OOM_KILLS: &str = "pod.oom_kills";
/// `pod.ephemeral_storage`: a pod's ephemeral storage near its limit.
pub const POD_EPHEMERAL_STORAGE: &str = "pod.ephemeral_storage";

// The clock probe.
/// `clock.unsynchronised`: nothing has disciplined the clock for a while (adjtimex).
pub const CLOCK_UNSYNCHRONISED: &str = "clock.unsynchronised";
/// `clock.offset`: the clock is off by more than TLS and etcd tolerate.
pub const CLOCK_OFFSET: &str = "clock.offset";

// The inotify probe.
/// `inotify.instances`: a user's inotify instances near `fs.inotify.max_user_instances`.
pub const INOTIFY_INSTANCES: &str = "inotify.instances";
/// `inotify.watches`: a user's inotify watches near `fs.inotify.max_user_watches`.
pub const INOTIFY_WATCHES: &str = "inotify.watches";

// The net probe.
/// `net.link_down`: the interface the default route leaves by has no carrier.
pub const NET_LINK_DOWN: &str = "net.link_down";
/// `net.errors`: an interface loses packets to errors or drops.
pub const NET_ERRORS: &str = "net.errors";
/// `net.bond_degraded`: a bond runs with a slave down.
pub const NET_BOND_DEGRADED: &str = "net.bond_degraded";

// The services probe.
/// `services.kubelet_unhealthy`: the kubelet's /healthz failed 3 times in a row.
pub const SERVICES_KUBELET_UNHEALTHY: &str = "services.kubelet_unhealthy";
/// `services.runtime_not_ready`: a CRI runtime's Status says RuntimeReady false.
pub const SERVICES_RUNTIME_NOT_READY: &str = "services.runtime_not_ready";
/// `services.network_not_ready`: a CRI runtime's Status says NetworkReady false (the CNI
/// plugin is not set up).
pub const SERVICES_NETWORK_NOT_READY: &str = "services.network_not_ready";

// The certs probe.
/// `certs.expiry`: a certificate on the node expires within 7 days (critical within 24 h
/// or expired).
pub const CERTS_EXPIRY: &str = "certs.expiry";
/// `certs.rotation`: a certificate past 80 % of its lifetime has not been replaced.
pub const CERTS_ROTATION: &str = "certs.rotation";
/// `certs.unreadable`: a certificate the node's config names cannot be read or parsed.
pub const CERTS_UNREADABLE: &str = "certs.unreadable";

// The journal probe.
/// `journal.kubelet_restarts`: the kubelet started 5 times in 20 minutes.
pub const JOURNAL_KUBELET_RESTARTS: &str = "journal.kubelet_restarts";
/// `journal.containerd_restarts`: containerd started 5 times in 20 minutes.
pub const JOURNAL_CONTAINERD_RESTARTS: &str = "journal.containerd_restarts";
/// `journal.docker_restarts`: Docker started 5 times in 20 minutes.
pub const JOURNAL_DOCKER_RESTARTS: &str = "journal.docker_restarts";
/// `journal.unit_restarts`: another node service (CRI-O, cri-dockerd, the agent) started 5
/// times in 20 minutes.
pub const JOURNAL_UNIT_RESTARTS: &str = "journal.unit_restarts";
/// `journal.kubelet_pleg`: the kubelet logs "PLEG is not healthy".
pub const JOURNAL_KUBELET_PLEG: &str = "journal.kubelet_pleg";
/// `journal.kubelet_certificate`: the kubelet fails to rotate or use its certificate.
pub const JOURNAL_KUBELET_CERTIFICATE: &str = "journal.kubelet_certificate";
/// `journal.kubelet_eviction`: the kubelet's eviction manager reclaims a resource.
pub const JOURNAL_KUBELET_EVICTION: &str = "journal.kubelet_eviction";
/// `journal.kubelet_image_gc`: the kubelet's image garbage collection fails.
pub const JOURNAL_KUBELET_IMAGE_GC: &str = "journal.kubelet_image_gc";
/// `journal.runtime_error`: containerd or Docker logs errors.
pub const JOURNAL_RUNTIME_ERROR: &str = "journal.runtime_error";
/// `journal.docker_overlay2`: Docker's overlay2 storage is corrupt.
pub const JOURNAL_DOCKER_OVERLAY2: &str = "journal.docker_overlay2";
/// `journal.event`: a journal rule whose reason maps to no check.
pub const JOURNAL_EVENT: &str = "journal.event";

// Raised by the agent or the collector about nodemedic itself.
/// `probe.failed`: a probe could not measure (its checks are unknown).
pub const PROBE_FAILED: &str = "probe.failed";
/// `node.silent`: a node stopped reporting (raised by the collector).
pub const NODE_SILENT: &str = "node.silent";

/// Every check, in the order above.
pub const ALL: &[&str] = &[
    DISK_SPACE,
    DISK_INODES,
    DISK_READONLY,
    DISK_FILL_RATE,
    DISK_PVC_FILLING,
    DISK_IO_PRESSURE,
    MEMORY_AVAILABLE,
    MEMORY_PRESSURE,
    MEMORY_OOM_KILLS,
    MEMORY_SWAP,
    SYSTEM_PIDS,
    SYSTEM_FILE_DESCRIPTORS,
    SYSTEM_CONNTRACK,
    SYSTEM_CPU_PRESSURE,
    DNS_UNREACHABLE,
    DNS_FAILING,
    DNS_SLOW,
    DNS_TIMEOUTS_5S,
    DNS_CONFIG,
    IMAGES_RECLAIMABLE,
    IMAGES_DANGLING,
    IMAGES_GC_IMMINENT,
    IMAGES_RUNTIME_UNREACHABLE,
    KERNEL_OOM_KILL,
    KERNEL_HUNG_TASK,
    KERNEL_SOFT_LOCKUP,
    KERNEL_FS_ERROR,
    KERNEL_READONLY_REMOUNT,
    KERNEL_IO_ERROR,
    KERNEL_CONNTRACK_FULL,
    KERNEL_UNREGISTER_NETDEVICE,
    KERNEL_OOPS,
    KERNEL_HARDWARE_ERROR,
    KERNEL_PANIC,
    KERNEL_NIC_TX_TIMEOUT,
    KERNEL_GPU_ERROR,
    KERNEL_EVENT,
    POD_CRASHLOOP,
    POD_OOMKILLED,
    POD_IMAGE_PULL,
    POD_EVICTED,
    POD_PENDING,
    POD_CONFIG_ERROR,
    POD_TERMINATING_STUCK,
    POD_PROBE_FAILING,
    POD_RESTARTS,
    POD_STUCK_CREATING,
    CLUSTER_QUOTA_NEAR_LIMIT,
    CLUSTER_QUOTA_EXCEEDED,
    CLUSTER_PVC_PENDING,
    CLUSTER_CERT_EXPIRY,
    CLUSTER_CERT_NOT_RENEWED,
    NODE_CONDITION,
    NODE_NOT_FOUND,
    NODE_PODS_CAPACITY,
    NODE_OVERCOMMITTED,
    NODE_CORDONED,
    POD_MEMORY_NEAR_LIMIT,
    POD_MEMORY_THROTTLED,
    POD_CPU_THROTTLED,
    POD_OOM_KILLS,
    POD_EPHEMERAL_STORAGE,
    CLOCK_UNSYNCHRONISED,
    CLOCK_OFFSET,
    INOTIFY_INSTANCES,
    INOTIFY_WATCHES,
    NET_LINK_DOWN,
    NET_ERRORS,
    NET_BOND_DEGRADED,
    SERVICES_KUBELET_UNHEALTHY,
    SERVICES_RUNTIME_NOT_READY,
    SERVICES_NETWORK_NOT_READY,
    CERTS_EXPIRY,
    CERTS_ROTATION,
    CERTS_UNREADABLE,
    JOURNAL_KUBELET_RESTARTS,
    JOURNAL_CONTAINERD_RESTARTS,
    JOURNAL_DOCKER_RESTARTS,
    JOURNAL_UNIT_RESTARTS,
    JOURNAL_KUBELET_PLEG,
    JOURNAL_KUBELET_CERTIFICATE,
    JOURNAL_KUBELET_EVICTION,
    JOURNAL_KUBELET_IMAGE_GC,
    JOURNAL_RUNTIME_ERROR,
    JOURNAL_DOCKER_OVERLAY2,
    JOURNAL_EVENT,
    PROBE_FAILED,
    NODE_SILENT,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_check_is_family_dot_name_and_listed_once() {
        let mut seen = std::collections::HashSet::new();
        for check in ALL {
            let (family, name) = check.split_once('.').expect("family.name");
            assert!(!family.is_empty() && !name.is_empty(), "{check}");
            assert!(seen.insert(check), "{check} twice");
        }
    }
}
