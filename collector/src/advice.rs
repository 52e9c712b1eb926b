//! What to run for each check: one line per check, with `{node}` and `{subject}` filled
//! from the finding. The runbook catalog (correlation across nodes, ordered remediation
//! steps) will grow from this table.

use nodemedic_proto::v1::Finding;

/// `(check, advice)`; kept in the order of the checks' probes.
const ADVICE: &[(&str, &str)] = &[
    (
        "disk.space",
        "Find what fills it: `du -xh --max-depth=2 {subject} | sort -h | tail`. Unused images: `crictl rmi --prune` (containerd) or `docker image prune -a` (Docker); old logs: `journalctl --vacuum-size=500M`; a full pod volume: expand its PVC.",
    ),
    (
        "disk.inodes",
        "Find the directories with the most files: `du --inodes -x {subject} | sort -n | tail`; remove small files nobody needs (old logs, caches, unused images).",
    ),
    (
        "disk.readonly",
        "Read the kernel log (`dmesg | grep -iE 'error|read-only'`), drain the node (`kubectl drain {node} --ignore-daemonsets --delete-emptydir-data`), then repair the filesystem or replace the disk.",
    ),
    (
        "disk.fill_rate",
        "Find what grows: `du -xh --max-depth=2 {subject} | sort -h | tail`, twice a few minutes apart; logs without rotation and crash-looping pods writing to emptyDir are the usual cause.",
    ),
    (
        "memory.available",
        "Find the largest pods: `kubectl top pods -A --sort-by=memory`; give pods without limits a memory limit, or move workloads off {node}.",
    ),
    (
        "memory.pressure",
        "Find the largest pods: `kubectl top pods -A --sort-by=memory`; the node needs more memory or fewer pods.",
    ),
    (
        "memory.oom_kills",
        "See what the kernel killed: `dmesg | grep -iE 'killed process|oom-kill'`; raise that container's memory limit, or fix its leak.",
    ),
    (
        "memory.swap",
        "Kubernetes expects swap off unless the NodeSwap feature is configured: `swapoff -a` and remove swap from /etc/fstab, or set the kubelet's memorySwap behaviour.",
    ),
    (
        "system.pids",
        "Find the processes with the most threads: `ps -eo nlwp,pid,comm --sort=-nlwp | head`; cap pods with the kubelet's podPidsLimit.",
    ),
    (
        "system.file_descriptors",
        "Find the processes with the most open files: `for p in /proc/[0-9]*; do echo \"$(ls $p/fd 2>/dev/null | wc -l) $p\"; done | sort -n | tail`; raise fs.file-max only if the use is legitimate.",
    ),
    (
        "system.conntrack",
        "Raise the table: `sysctl -w net.netfilter.nf_conntrack_max=<twice the current value>` (and kube-proxy's conntrack settings); see who opens connections: `conntrack -S`.",
    ),
    (
        "system.cpu_pressure",
        "Find the busiest pods: `kubectl top pods -A --sort-by=cpu`; give them CPU requests and limits.",
    ),
    (
        "probe.failed",
        "Read the agent's log for the error; the agent needs the host's / mounted read-only at --host-root.",
    ),
    (
        "node.silent",
        "Check the agent pod (`kubectl -n nodemedic get pods -o wide --field-selector spec.nodeName={node}`) and the node (`kubectl describe node {node}`).",
    ),
];

/// The advice for a finding, placeholders filled; `None` for a check without any.
pub fn advice(finding: &Finding) -> Option<String> {
    let (_, text) = ADVICE.iter().find(|(check, _)| *check == finding.check)?;
    let subject = if finding.subject.is_empty() {
        "/"
    } else {
        &finding.subject
    };
    Some(
        text.replace("{node}", &finding.node)
            .replace("{subject}", subject),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use nodemedic_proto::v1::Severity;

    #[test]
    fn fills_placeholders() {
        let f = Finding {
            node: "node-1".into(),
            ..Finding::fail(
                "disk.readonly",
                Severity::Critical,
                "/var/lib/kubelet",
                "x".into(),
            )
        };
        let text = advice(&f).unwrap();
        assert!(text.contains("kubectl drain node-1"), "{text}");
        let f = Finding::fail(
            "disk.space",
            Severity::Critical,
            "/var/lib/kubelet",
            "x".into(),
        );
        assert!(
            advice(&f)
                .unwrap()
                .contains("du -xh --max-depth=2 /var/lib/kubelet")
        );
        assert!(advice(&Finding::fail("made.up", Severity::Info, "", "x".into())).is_none());
    }

    #[test]
    fn every_check_has_advice_once() {
        for (i, (check, _)) in ADVICE.iter().enumerate() {
            assert!(
                !ADVICE[i + 1..].iter().any(|(c, _)| c == check),
                "{check} twice"
            );
        }
    }
}
