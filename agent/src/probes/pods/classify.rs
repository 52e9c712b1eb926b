//! What the kubelet's and the scheduler's messages mean, told apart where the words allow.
//! Each function is tested on real messages from `tests/fixtures/real/pods/`.

/// Why an image pull failed: `auth`, `not_found`, `rate_limit`, `timeout`, `tls`,
/// `unreachable`, or `other`.
pub fn pull_error(message: &str) -> &'static str {
    let m = message.to_ascii_lowercase();
    let any = |words: &[&str]| words.iter().any(|w| m.contains(w));
    if any(&["toomanyrequests", "too many requests", "rate limit", "429"]) {
        "rate_limit"
    } else if any(&[
        "unauthorized",
        "authentication required",
        "no basic auth credentials",
        "access denied",
        "denied:",
        "401",
        "403 forbidden",
        "insufficient_scope",
    ]) {
        "auth"
    } else if any(&[
        "not found",
        "manifest unknown",
        "does not exist",
        "404",
        "name unknown",
    ]) {
        "not_found"
    } else if any(&["x509", "certificate"]) {
        "tls"
    } else if any(&["timeout", "timed out", "deadline exceeded", "tls handshake"]) {
        "timeout"
    } else if any(&[
        "no such host",
        "connection refused",
        "dial tcp",
        "network is unreachable",
    ]) {
        "unreachable"
    } else {
        "other"
    }
}

/// The event reasons of a pod that cannot get past sandbox, volume or mount set-up.
pub const CREATION_FAILURES: &[&str] = &[
    "FailedCreatePodSandBox",
    "FailedAttachVolume",
    "FailedMount",
];

/// Why a pod cannot be created, from a [`CREATION_FAILURES`] event's message:
/// `ip_exhausted`, `cni` (the network plugin), `sandbox` (the runtime), `multi_attach`,
/// `attach_limit`, `attach_timeout`, `attach_failed`, `secret_missing`,
/// `configmap_missing`, `mount_timeout`, `mount_failed`, or `other`.
pub fn creation_failure(message: &str) -> &'static str {
    let m = message.to_ascii_lowercase();
    let any = |words: &[&str]| words.iter().any(|w| m.contains(w));
    if any(&[
        "failed to assign an ip",
        "no ip addresses available",
        "failed to allocate for range",
        "no more free ip",
    ]) {
        "ip_exhausted"
    } else if any(&[
        "networkplugin cni",
        "failed to setup network for sandbox",
        "failed to set up sandbox container",
        "plugin type=",
        "cni plugin",
    ]) {
        "cni"
    } else if any(&["pod sandbox", "runpodsandbox"]) {
        "sandbox"
    } else if m.contains("multi-attach error") {
        "multi_attach"
    } else if any(&[
        "max number of volumes",
        "attachmentlimitexceeded",
        "attachment limit",
        "volume attach limit",
        "maximum number of attached",
    ]) {
        "attach_limit"
    } else if m.contains("attachvolume.attach failed") {
        if any(&["timed out", "timeout"]) {
            "attach_timeout"
        } else {
            "attach_failed"
        }
    } else if m.contains("not found") && m.contains("secret \"") {
        "secret_missing"
    } else if m.contains("not found") && m.contains("configmap \"") {
        "configmap_missing"
    } else if any(&[
        "unable to attach or mount volumes",
        "timeout expired waiting for volumes",
    ]) {
        "mount_timeout"
    } else if m.contains("mountvolume") {
        "mount_failed"
    } else {
        "other"
    }
}

/// The registry an image reference pulls from (`docker.io` when it names none).
pub fn registry(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first
        }
        _ => "docker.io",
    }
}

/// The resource an eviction message names: `memory`, `ephemeral-storage`, `pids`, ...
pub fn eviction_resource(message: &str) -> Option<&str> {
    if let Some((_, rest)) = message.split_once("low on resource: ") {
        return rest.split(['.', ',', ' ']).next().filter(|r| !r.is_empty());
    }
    if let Some((_, rest)) = message.split_once("had condition: [") {
        return match rest.split(']').next()? {
            "MemoryPressure" => Some("memory"),
            "DiskPressure" => Some("ephemeral-storage"),
            "PIDPressure" => Some("pids"),
            _ => None,
        };
    }
    let m = message.to_ascii_lowercase();
    (m.contains("ephemeral local storage") || m.contains("emptydir")).then_some("ephemeral-storage")
}

/// Every reason a scheduling message gives, most actionable first: `insufficient_cpu`,
/// `insufficient_memory`, `insufficient_other` (GPUs, pods), `quota`, `taint`, `volume`,
/// `affinity`; `other` when none is recognised.
pub fn scheduling_reasons(message: &str) -> Vec<&'static str> {
    let m = message.to_ascii_lowercase();
    let mut out = Vec::new();
    for (reason, words) in [
        ("insufficient_cpu", &["insufficient cpu"][..]),
        ("insufficient_memory", &["insufficient memory"][..]),
        (
            "quota",
            &["exceeded quota", "failed quota", "must specify"][..],
        ),
        (
            "taint",
            &["taint", "didn't tolerate", "podtoleratesnodetaints"][..],
        ),
        (
            "volume",
            &[
                "volume node affinity",
                "unbound immediate persistentvolumeclaims",
                "persistentvolumeclaim",
                "didn't find available persistent volumes",
                "volume binding",
            ][..],
        ),
        (
            "affinity",
            &[
                "node affinity",
                "node selector",
                "matchnodeselector",
                "didn't match pod's node affinity",
                "anti-affinity",
            ][..],
        ),
    ] {
        if words.iter().any(|w| m.contains(w)) {
            out.push(reason);
        }
    }
    let other_insufficient = m.match_indices("insufficient ").any(|(i, _)| {
        !m[i..].starts_with("insufficient cpu") && !m[i..].starts_with("insufficient memory")
    });
    if other_insufficient {
        let at = out
            .iter()
            .position(|r| !r.starts_with("insufficient"))
            .unwrap_or(out.len());
        out.insert(at, "insufficient_other");
    }
    if out.is_empty() {
        out.push("other");
    }
    out
}

/// What a `CreateContainerConfigError` is missing: (`secret`, `configmap`, `secret_key`,
/// `configmap_key` or `other`, and the object or key named).
pub fn config_error(message: &str) -> (&'static str, String) {
    let quoted = |m: &str| m.split('"').nth(1).unwrap_or_default().to_owned();
    if let Some((_, rest)) = message.split_once("couldn't find key ") {
        let (key, object) = rest.split_once(" in ").unwrap_or((rest, ""));
        let (kind, name) = object.split_once(' ').unwrap_or(("", object));
        let kind = match kind {
            "Secret" => "secret_key",
            "ConfigMap" => "configmap_key",
            _ => "other",
        };
        return (kind, format!("{name} key {key}"));
    }
    if message.contains("secret \"") && message.contains("not found") {
        return ("secret", quoted(message));
    }
    if message.contains("configmap \"") && message.contains("not found") {
        return ("configmap", quoted(message));
    }
    ("other", String::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_errors_from_real_kubelet_messages() {
        // troubleshoot-pods-message-image-pull-fail.json and its events.
        assert_eq!(
            pull_error(
                "rpc error: code = Unknown desc = Error response from daemon: Get \"https://noimage.com/v2/\": x509: certificate is not valid for any names, but wanted to match noimage.com"
            ),
            "tls"
        );
        assert_eq!(
            pull_error(
                "rpc error: code = Unknown desc = Error response from daemon: Get \"https://noimage.com/v2/\": net/http: TLS handshake timeout"
            ),
            "timeout"
        );
        // holmesgpt-describe-pod-imagepullbackoff.txt
        assert_eq!(
            pull_error(
                "failed to do request: Head \"https://totallynonexistentregistry12345.io/v2/doesnotexist/invalid/manifests/latest\": dial tcp: lookup totallynonexistentregistry12345.io: no such host"
            ),
            "unreachable"
        );
        // Docker Hub's and registries' standard words (no fixture has them).
        assert_eq!(
            pull_error("toomanyrequests: You have reached your pull rate limit."),
            "rate_limit"
        );
        assert_eq!(
            pull_error(
                "pull access denied for foo, repository does not exist or may require 'docker login': denied: requested access to the resource is denied"
            ),
            "auth"
        );
        assert_eq!(
            pull_error(
                "failed to resolve reference \"docker.io/library/nginx:nope\": docker.io/library/nginx:nope: not found"
            ),
            "not_found"
        );
    }

    #[test]
    fn registries_of_image_references() {
        assert_eq!(registry("ubuntu:latest"), "docker.io");
        assert_eq!(registry("library/nginx"), "docker.io");
        assert_eq!(registry("noimage.com/no-such-image"), "noimage.com");
        assert_eq!(
            registry("localhost:5000/aegis-workload:0.15.6"),
            "localhost:5000"
        );
        assert_eq!(registry("registry.k8s.io/pause:3.9"), "registry.k8s.io");
    }

    #[test]
    fn eviction_resources_from_real_messages() {
        for (message, want) in [
            (
                "The node was low on resource: ephemeral-storage. Container ebaogi-bff-app was using 34260Ki, which exceeds its request of 0. ",
                "ephemeral-storage",
            ),
            (
                "The node was low on resource: memory. Container node was using 35505620Ki, which exceeds its request of 12Gi. ",
                "memory",
            ),
            (
                "The node was low on resource: ephemeral-storage. Threshold quantity: 2146223340, available: 1883424Ki. Container helmer was using 10304Ki, request is 10Mi, has larger consumption of ephemeral-storage.",
                "ephemeral-storage",
            ),
            ("The node had condition: [MemoryPressure].", "memory"),
            (
                "Pod ephemeral local storage usage exceeds the total limit of containers 1Gi.",
                "ephemeral-storage",
            ),
        ] {
            assert_eq!(eviction_resource(message), Some(want), "{message}");
        }
        assert_eq!(
            eviction_resource("Preempted by a higher priority pod"),
            None
        );
    }

    #[test]
    fn scheduling_reasons_from_real_messages() {
        for (message, want) in [
            (
                "0/1 nodes are available: 1 Insufficient nvidia.com/gpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.",
                &["insufficient_other"][..],
            ),
            (
                "0/25 nodes are available: 1 Insufficient pods, 1 PodToleratesNodeTaints, 23 Insufficient cpu.",
                &["insufficient_cpu", "insufficient_other", "taint"][..],
            ),
            (
                "0/1 nodes are available: 1 node(s) had taint {node.kubernetes.io/disk-pressure: }, that the pod didn't tolerate.",
                &["taint"][..],
            ),
            (
                "No nodes are available that match all of the following predicates:: Insufficient cpu (9), Insufficient memory (15), MatchNodeSelector (18).",
                &["insufficient_cpu", "insufficient_memory", "affinity"][..],
            ),
            (
                "Error creating: pods \"prometheus-operator-d75587d6-w2tz8\" is forbidden: exceeded quota: namespace-quota, requested: limits.cpu=1, used: limits.cpu=5426m, limited: limits.cpu=6",
                &["quota"][..],
            ),
            (
                "create Pod fpl-case-service-pr-3308-es-master-0 in StatefulSet fpl-case-service-pr-3308-es-master failed error: pods \"fpl-case-service-pr-3308-es-master-0\" is forbidden: failed quota: fpl-quota: must specify requests.cpu,requests.memory",
                &["quota"][..],
            ),
            // The scheduler's volume binding words (no fixture has them).
            (
                "0/3 nodes are available: 3 node(s) had volume node affinity conflict.",
                &["volume", "affinity"][..],
            ),
            (
                "skip schedule deleting pod: default/pending-pod-resources-5fddcf7688-wzvfz",
                &["other"][..],
            ),
        ] {
            assert_eq!(scheduling_reasons(message), want, "{message}");
        }
    }

    /// Every block of the corpus: its lines classified as its `# cause:` says.
    #[test]
    fn creation_failures_from_real_events() {
        let corpus = include_str!("../../../../tests/fixtures/real/pods/stuck-creating-corpus.txt");
        let mut seen = 0;
        let mut cause = None;
        for line in corpus.lines() {
            if let Some(c) = line.strip_prefix("# cause: ") {
                cause = Some(c);
            } else if !line.starts_with('#') && !line.trim().is_empty() {
                let want = cause.expect("a cause before the lines");
                assert_eq!(creation_failure(line), want, "{line}");
                seen += 1;
            }
        }
        assert_eq!(seen, 11);
        // troubleshoot-events-message-container-creating-failed-mount.min.json
        assert_eq!(
            creation_failure(
                "MountVolume.SetUp failed for volume \"host\" : hostPath type check failed: /var/lib/collectd is not a directory"
            ),
            "mount_failed"
        );
    }

    #[test]
    fn config_errors_from_real_messages() {
        // issue-aegis-293-createcontainerconfigerror-events.txt
        assert_eq!(
            config_error(
                "couldn't find key VALUE in Secret default/aegis-secret-aegis-workload-demo"
            ),
            (
                "secret_key",
                "default/aegis-secret-aegis-workload-demo key VALUE".into()
            )
        );
        // The kubelet's words for a missing object (no fixture has them).
        assert_eq!(
            config_error("secret \"db-credentials\" not found"),
            ("secret", "db-credentials".into())
        );
        assert_eq!(
            config_error("configmap \"app-config\" not found"),
            ("configmap", "app-config".into())
        );
    }
}
