//! Which pod and container a cgroup path belongs to, in the layouts the kubelet makes:
//!
//! - cgroupfs driver: `/kubepods/burstable/pod<uid>/<container id>` (Guaranteed pods sit
//!   directly under `/kubepods`);
//! - systemd driver: `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid
//!   with _ for ->.slice/cri-containerd-<id>.scope` (also `docker-`, `crio-`);
//!
//! with anything in front (a container runtime's own nesting, `/lxc.payload.x/`).

/// A pod's cgroup, and the container's when the path goes that deep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodCgroup {
    /// The pod's UID, with dashes.
    pub pod_uid: String,
    /// The container's runtime ID (64 hex digits), when the path names one.
    pub container_id: Option<String>,
}

/// The pod (and container) a cgroup path names; `None` outside `kubepods`.
pub fn pod_of(path: &str) -> Option<PodCgroup> {
    let mut segments = path.split('/').skip_while(|s| !s.starts_with("kubepods"));
    segments.next()?;
    let pod_uid = segments.by_ref().find_map(pod_uid)?;
    let container_id = segments.next().and_then(container_id);
    Some(PodCgroup {
        pod_uid,
        container_id,
    })
}

/// `pod1b2c...` or `kubepods-burstable-pod1b2c_...slice`.
fn pod_uid(segment: &str) -> Option<String> {
    let uid = match segment.strip_suffix(".slice") {
        Some(slice) => slice.rsplit_once("-pod")?.1.replace('_', "-"),
        None => segment.strip_prefix("pod")?.to_owned(),
    };
    let uid_like =
        (32..=36).contains(&uid.len()) && uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    uid_like.then_some(uid)
}

/// `<id>`, or `cri-containerd-<id>.scope` and the like.
fn container_id(segment: &str) -> Option<String> {
    let id = segment.strip_suffix(".scope").unwrap_or(segment);
    let id = id.rsplit_once('-').map_or(id, |(_, id)| id);
    (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str, container: Option<&str>) -> Option<PodCgroup> {
        Some(PodCgroup {
            pod_uid: uid.into(),
            container_id: container.map(Into::into),
        })
    }

    #[test]
    fn both_drivers_and_every_qos_class() {
        // From the kernel logs in tests/fixtures/real/kernel/.
        let cid = "6895a3e13439535852d3184ac2aadd26d7363cc035f171545ec7d4ce74073b0b";
        assert_eq!(
            pod_of(&format!(
                "/kubepods/pod95387fa4-da9c-11e7-9d36-5254b24cbf5e/{cid}"
            )),
            pod("95387fa4-da9c-11e7-9d36-5254b24cbf5e", Some(cid))
        );
        let cid = "ec9ee26695deb4cc72bc665efff1cf3a03fdfb12f1303e02fe9252985e084a95";
        assert_eq!(
            pod_of(&format!(
                "/lxc.payload.ny2g2r5hh3-lxc/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podeded8c65_6e8e_4c6e_a889_3e427565c740.slice/cri-containerd-{cid}.scope"
            )),
            pod("eded8c65-6e8e-4c6e-a889-3e427565c740", Some(cid))
        );
        assert_eq!(
            pod_of(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podeded8c65_6e8e_4c6e_a889_3e427565c740.slice"
            ),
            pod("eded8c65-6e8e-4c6e-a889-3e427565c740", None)
        );
        assert_eq!(
            pod_of("/kubepods/besteffort/pod95387fa4-da9c-11e7-9d36-5254b24cbf5e"),
            pod("95387fa4-da9c-11e7-9d36-5254b24cbf5e", None)
        );
    }

    #[test]
    fn cgroups_outside_kubepods_are_no_pod() {
        assert_eq!(
            pod_of(
                "/system.slice/docker-00748bf4e957f82c239a1db8a88579059b7d40c7b5fbd3f43617d31d3f646f12.scope"
            ),
            None
        );
        assert_eq!(pod_of("/user.slice/user-121.slice/session-c1.scope"), None);
        assert_eq!(pod_of("/kubepods/burstable"), None);
        assert_eq!(pod_of("/"), None);
    }
}
