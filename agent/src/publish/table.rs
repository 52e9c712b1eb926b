//! Which node condition each check raises: the table the README prints (and a test keeps
//! the README in step with). Where node-problem-detector has a condition for the same
//! problem, its type is used, so remediators configured for it (Medik8s NodeHealthCheck's
//! `unhealthyConditions`, draino, Cluster API MachineHealthCheck) work unchanged; the rest
//! are nodemedic's own. As in node-problem-detector, `True` means the problem is there.
//!
//! Not in the table, by design: `pod.*` checks (a pod's problem is written as an Event on
//! the pod: a node condition would make a node remediator drain or reboot a node for one
//! application's bug), `node.condition` (it *is* another agent's condition), and checks
//! that cannot be judged on the node (`node.silent`, `node.not_found`, `probe.failed`).

use nodemedic_proto::checks;

/// One condition type and the checks whose warning and critical findings raise it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConditionRow {
    /// The condition's `type`.
    pub kind: &'static str,
    /// Its `reason` while `True`.
    pub problem: &'static str,
    /// Its `reason` while `False`.
    pub ok: &'static str,
    /// Whether node-problem-detector has this type (and draino/NHC configs name it).
    pub npd: bool,
    /// The checks that raise it.
    pub checks: &'static [&'static str],
}

const fn row(
    kind: &'static str,
    problem: &'static str,
    ok: &'static str,
    npd: bool,
    checks: &'static [&'static str],
) -> ConditionRow {
    ConditionRow {
        kind,
        problem,
        ok,
        npd,
        checks,
    }
}

/// The table, in the order `kubectl describe node` shows the conditions.
pub const TABLE: &[ConditionRow] = &[
    row(
        "KernelDeadlock",
        "KernelHasDeadlock",
        "KernelHasNoDeadlock",
        true,
        &[checks::KERNEL_HUNG_TASK, checks::KERNEL_SOFT_LOCKUP],
    ),
    row(
        "ReadonlyFilesystem",
        "FilesystemIsReadOnly",
        "FilesystemIsNotReadOnly",
        true,
        &[checks::DISK_READONLY, checks::KERNEL_READONLY_REMOUNT],
    ),
    row(
        "ContainerRuntimeUnhealthy",
        "ContainerRuntimeIsDown",
        "ContainerRuntimeIsUp",
        true,
        &[
            checks::IMAGES_RUNTIME_UNREACHABLE,
            checks::SERVICES_RUNTIME_NOT_READY,
            checks::JOURNAL_RUNTIME_ERROR,
        ],
    ),
    row(
        "FrequentKubeletRestart",
        "FrequentKubeletRestart",
        "NoFrequentKubeletRestart",
        true,
        &[checks::JOURNAL_KUBELET_RESTARTS],
    ),
    row(
        "FrequentContainerdRestart",
        "FrequentContainerdRestart",
        "NoFrequentContainerdRestart",
        true,
        &[checks::JOURNAL_CONTAINERD_RESTARTS],
    ),
    row(
        "FrequentDockerRestart",
        "FrequentDockerRestart",
        "NoFrequentDockerRestart",
        true,
        &[checks::JOURNAL_DOCKER_RESTARTS],
    ),
    row(
        "CorruptDockerOverlay2",
        "CorruptDockerOverlay2",
        "NoCorruptDockerOverlay2",
        true,
        &[checks::JOURNAL_DOCKER_OVERLAY2],
    ),
    row(
        "FrequentUnitRestart",
        "NodeServiceRestartLoop",
        "NodeServicesStable",
        false,
        &[checks::JOURNAL_UNIT_RESTARTS],
    ),
    row(
        "KubeletProblem",
        "KubeletLogsProblem",
        "KubeletLogsClean",
        false,
        &[
            checks::JOURNAL_KUBELET_PLEG,
            checks::JOURNAL_KUBELET_CERTIFICATE,
            checks::JOURNAL_KUBELET_EVICTION,
            checks::JOURNAL_KUBELET_IMAGE_GC,
        ],
    ),
    row(
        "KubeletUnhealthy",
        "KubeletUnhealthy",
        "KubeletIsHealthy",
        true,
        &[checks::SERVICES_KUBELET_UNHEALTHY],
    ),
    row(
        "PodNetworkNotReady",
        "CNIPluginNotReady",
        "CNIPluginReady",
        false,
        &[checks::SERVICES_NETWORK_NOT_READY],
    ),
    row(
        "DiskFilling",
        "DiskIsFilling",
        "DiskHasRoom",
        false,
        &[
            checks::DISK_SPACE,
            checks::DISK_INODES,
            checks::DISK_FILL_RATE,
        ],
    ),
    row(
        "ImagesFillingDisk",
        "UnusedImagesHoldDisk",
        "ImagesWithinBudget",
        false,
        &[
            checks::IMAGES_RECLAIMABLE,
            checks::IMAGES_DANGLING,
            checks::IMAGES_GC_IMMINENT,
        ],
    ),
    row(
        "DiskIOErrors",
        "DiskHasIOErrors",
        "DiskHasNoIOErrors",
        false,
        &[checks::KERNEL_FS_ERROR, checks::KERNEL_IO_ERROR],
    ),
    row(
        "MemoryLow",
        "MemoryIsLow",
        "MemoryIsSufficient",
        false,
        &[
            checks::MEMORY_AVAILABLE,
            checks::MEMORY_PRESSURE,
            checks::MEMORY_SWAP,
        ],
    ),
    row(
        "OOMKilling",
        "KernelKillsProcesses",
        "NoOOMKills",
        false,
        &[checks::MEMORY_OOM_KILLS, checks::KERNEL_OOM_KILL],
    ),
    row(
        "CPUPressure",
        "TasksWaitForCPU",
        "CPUHasRoom",
        false,
        &[checks::SYSTEM_CPU_PRESSURE],
    ),
    row(
        "IOPressure",
        "TasksStallOnIO",
        "IOHasRoom",
        false,
        &[checks::DISK_IO_PRESSURE],
    ),
    row(
        "NetworkInterfaceProblem",
        "InterfaceDownOrLossy",
        "InterfacesHealthy",
        false,
        &[
            checks::NET_LINK_DOWN,
            checks::NET_ERRORS,
            checks::NET_BOND_DEGRADED,
        ],
    ),
    row(
        "KernelLimitsNear",
        "KernelTableNearFull",
        "KernelTablesHaveRoom",
        false,
        &[
            checks::SYSTEM_PIDS,
            checks::SYSTEM_FILE_DESCRIPTORS,
            checks::INOTIFY_INSTANCES,
            checks::INOTIFY_WATCHES,
        ],
    ),
    row(
        "ConntrackExhausted",
        "ConntrackTableFull",
        "ConntrackHasRoom",
        false,
        &[checks::SYSTEM_CONNTRACK, checks::KERNEL_CONNTRACK_FULL],
    ),
    row(
        "DNSFailing",
        "DNSFailsFromNode",
        "DNSWorks",
        false,
        &[
            checks::DNS_UNREACHABLE,
            checks::DNS_FAILING,
            checks::DNS_SLOW,
            checks::DNS_TIMEOUTS_5S,
            checks::DNS_CONFIG,
        ],
    ),
    row(
        "NetworkDeviceProblem",
        "NetworkDeviceStuck",
        "NetworkDevicesWork",
        false,
        &[
            checks::KERNEL_UNREGISTER_NETDEVICE,
            checks::KERNEL_NIC_TX_TIMEOUT,
        ],
    ),
    row(
        "KernelOops",
        "KernelHasOopsed",
        "KernelHasNoOops",
        false,
        &[checks::KERNEL_OOPS, checks::KERNEL_PANIC],
    ),
    row(
        "ClockNotSynchronised",
        "ClockIsOff",
        "ClockIsSynchronised",
        false,
        &[checks::CLOCK_UNSYNCHRONISED, checks::CLOCK_OFFSET],
    ),
    row(
        "CertificateExpiring",
        "CertificateExpiresSoon",
        "CertificatesValid",
        false,
        &[
            checks::CERTS_EXPIRY,
            checks::CERTS_ROTATION,
            checks::CERTS_UNREADABLE,
        ],
    ),
    row(
        "HardwareErrors",
        "HardwareReportsErrors",
        "HardwareHasNoErrors",
        false,
        &[checks::KERNEL_HARDWARE_ERROR, checks::KERNEL_GPU_ERROR],
    ),
];

/// Whether a check is, by design, not a node condition (see the module's comment).
pub fn not_a_condition(check: &str) -> bool {
    check.starts_with("pod.")
        // The collector's cluster view: about namespaces and Secrets, never a node.
        || check.starts_with("cluster.")
        || [
            checks::NODE_CONDITION,
            checks::NODE_NOT_FOUND,
            // An application's volume, as pod.* are: not the node's trouble.
            checks::DISK_PVC_FILLING,
            // Read off the Node object itself: the cluster already knows.
            checks::NODE_PODS_CAPACITY,
            checks::NODE_OVERCOMMITTED,
            checks::NODE_CORDONED,
            checks::NODE_SILENT,
            checks::PROBE_FAILED,
            // Named by the rule file: a rule's `condition` (node-problem-detector's
            // permanent rules), else an Event only.
            checks::KERNEL_EVENT,
            checks::JOURNAL_EVENT,
        ]
        .contains(&check)
}

/// The row a check raises.
pub fn row_of(check: &str) -> Option<&'static ConditionRow> {
    TABLE.iter().find(|r| r.checks.contains(&check))
}

/// The table as the README prints it (Markdown).
pub fn markdown() -> String {
    let mut out = String::from(
        "| condition type | reason when True | reason when False | checks |\n|---|---|---|---|\n",
    );
    for r in TABLE {
        let npd = if r.npd {
            " (node-problem-detector's)"
        } else {
            ""
        };
        let checks: Vec<String> = r.checks.iter().map(|c| format!("`{c}`")).collect();
        out.push_str(&format!(
            "| `{}`{npd} | {} | {} | {} |\n",
            r.kind,
            r.problem,
            r.ok,
            checks.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_check_of_the_node_raises_exactly_one_condition() {
        for check in checks::ALL {
            let rows = TABLE.iter().filter(|r| r.checks.contains(check)).count();
            if not_a_condition(check) {
                assert_eq!(rows, 0, "{check} is not a node condition by design");
            } else {
                assert_eq!(rows, 1, "{check} must raise exactly one condition type");
            }
        }
    }

    #[test]
    fn types_are_unique_and_never_the_kubelets() {
        let kubelet = [
            "Ready",
            "MemoryPressure",
            "DiskPressure",
            "PIDPressure",
            "NetworkUnavailable",
        ];
        let mut seen = std::collections::BTreeSet::new();
        for r in TABLE {
            assert!(seen.insert(r.kind), "{} twice", r.kind);
            assert!(!kubelet.contains(&r.kind), "{} is the kubelet's", r.kind);
        }
    }

    #[test]
    fn the_readme_prints_the_table() {
        let readme = include_str!("../../../README.md");
        assert!(
            readme.contains(&markdown()),
            "README.md's condition table is out of step; paste:\n{}",
            markdown()
        );
    }
}
