//! Which mounts are the node's real filesystems, and what each one holds for the kubelet.

use std::collections::HashMap;

use nodemedic_proto::v1::MountRole;

use crate::parse::mountinfo::MountInfo;

/// Filesystem types that hold no node data: kernel interfaces, and images that are
/// read-only by design (snap's squashfs loops are always 100% full).
const IGNORED_TYPES: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "efivarfs",
    "erofs",
    "fuse.gvfsd-fuse",
    "fuse.lxcfs",
    "fusectl",
    "hugetlbfs",
    "iso9660",
    "mqueue",
    "nfsd",
    "nsfs",
    "proc",
    "pstore",
    "ramfs",
    "rootfs",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "sysfs",
    "tracefs",
];

/// Memory-backed or layered types: kept only where they hold a role (a tmpfs `/var/log`),
/// not as container root filesystems, secrets or `/run`.
const ROLE_ONLY_TYPES: &[&str] = &["tmpfs", "overlay", "shm"];

/// Mounts below these are containers' and pods' own, counted on the filesystem beneath.
const IGNORED_PREFIXES: &[&str] = &[
    "/proc/",
    "/sys/",
    "/dev/",
    "/run/",
    "/var/run/",
    "/snap/",
    "/var/lib/docker/",
    "/var/lib/containerd/",
    "/var/lib/containers/",
];

/// Where the kubelet and the runtimes keep their data.
const ROLE_PATHS: &[(&str, MountRole)] = &[
    ("/", MountRole::Root),
    ("/var/lib/kubelet", MountRole::Kubelet),
    ("/var/lib/docker", MountRole::Images),
    ("/var/lib/containerd", MountRole::Images),
    ("/var/lib/containers", MountRole::Images),
    ("/var/lib/rancher/k3s/agent/containerd", MountRole::Images),
    ("/var/log", MountRole::Logs),
];

/// A filesystem to measure.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The mount it is measured through.
    pub info: MountInfo,
    /// What it holds.
    pub roles: Vec<MountRole>,
}

/// Picks the real filesystems out of a mount table: no pseudo filesystems, no container
/// internals, one entry per filesystem (bind mounts folded into the first, shortest mount
/// point), each with the roles of the paths it holds. `exists` says whether a host
/// directory exists: a runtime that is not installed gives no role.
pub fn select(mounts: Vec<MountInfo>, exists: impl Fn(&str) -> bool) -> Vec<Candidate> {
    let is_role_path = |p: &str| ROLE_PATHS.iter().any(|(path, _)| *path == p);
    let mut kept: Vec<MountInfo> = mounts
        .into_iter()
        .filter(|m| !IGNORED_TYPES.contains(&m.fs_type.as_str()))
        .filter(|m| !ROLE_ONLY_TYPES.contains(&m.fs_type.as_str()) || is_role_path(&m.mount_point))
        .filter(|m| {
            !IGNORED_PREFIXES
                .iter()
                .any(|p| m.mount_point.starts_with(p))
        })
        .filter(|m| !m.mount_point.contains("/volume-subpaths/"))
        .collect();
    // A later mount on the same point hides the earlier one.
    let last_at: HashMap<&str, usize> = kept
        .iter()
        .enumerate()
        .map(|(i, m)| (m.mount_point.as_str(), i))
        .collect();
    let visible: Vec<bool> = kept
        .iter()
        .enumerate()
        .map(|(i, m)| last_at[m.mount_point.as_str()] == i)
        .collect();
    let mut visible = visible.into_iter();
    kept.retain(|_| visible.next().unwrap_or(false));

    let mut candidates: Vec<Candidate> = kept
        .iter()
        .map(|m| Candidate {
            info: m.clone(),
            roles: Vec::new(),
        })
        .collect();
    for (path, role) in ROLE_PATHS
        .iter()
        .filter(|(path, _)| *path == "/" || exists(path))
    {
        if let Some(holder) = holder_of(&kept, path) {
            push_role(&mut candidates[holder].roles, *role);
        }
    }
    for c in &mut candidates {
        if is_pod_volume(&c.info.mount_point) {
            push_role(&mut c.roles, MountRole::Volume);
        }
    }

    // One entry per filesystem: bind mounts share the device.
    candidates.sort_by_key(|c| (c.info.mount_point.len(), c.info.mount_point.clone()));
    let mut by_device: Vec<Candidate> = Vec::new();
    for c in candidates {
        match by_device
            .iter_mut()
            .find(|k| k.info.device_id == c.info.device_id)
        {
            Some(first) => {
                for role in c.roles {
                    push_role(&mut first.roles, role);
                }
            }
            None => by_device.push(c),
        }
    }
    for c in &mut by_device {
        c.roles.sort();
    }
    by_device
}

/// The index of the mount whose mount point is the longest prefix of `path`.
fn holder_of(mounts: &[MountInfo], path: &str) -> Option<usize> {
    mounts
        .iter()
        .enumerate()
        .filter(|(_, m)| is_under(path, &m.mount_point))
        .max_by_key(|(_, m)| m.mount_point.len())
        .map(|(i, _)| i)
}

/// `path` is `dir` or below it, component-wise.
fn is_under(path: &str, dir: &str) -> bool {
    dir == "/"
        || path == dir
        || (path.starts_with(dir) && path.as_bytes().get(dir.len()) == Some(&b'/'))
}

/// Volume plugins whose directories are not PersistentVolumes.
const LOCAL_PLUGINS: &[&str] = &[
    "kubernetes.io~empty-dir",
    "kubernetes.io~secret",
    "kubernetes.io~configmap",
    "kubernetes.io~projected",
    "kubernetes.io~downward-api",
    "kubernetes.io~git-repo",
];

/// A pod volume's pod UID and directory name, when the directory may be a
/// PersistentVolume's: `/var/lib/kubelet/pods/<uid>/volumes/<plugin>/<pv>` (in-tree
/// plugins) or `…/<pv>/mount` (CSI).
pub fn persistent_volume(mount_point: &str) -> Option<(&str, &str)> {
    let rest = mount_point.strip_prefix("/var/lib/kubelet/pods/")?;
    let mut parts = rest.split('/');
    let uid = parts.next()?;
    if parts.next()? != "volumes" {
        return None;
    }
    let plugin = parts.next()?;
    let dir = parts.next()?;
    let tail: Vec<&str> = parts.collect();
    let shaped = tail.is_empty() || tail == ["mount"];
    (shaped && !LOCAL_PLUGINS.contains(&plugin) && !dir.is_empty()).then_some((uid, dir))
}

fn is_pod_volume(mount_point: &str) -> bool {
    mount_point.starts_with("/var/lib/kubelet/pods/") && mount_point.contains("/volumes/")
}

fn push_role(roles: &mut Vec<MountRole>, role: MountRole) {
    if !roles.contains(&role) {
        roles.push(role);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persistent_volume_directories_and_local_ones() {
        let uid = "d1e865ca-a911-473c-95ba-d9cbdfce67cc";
        // The CSI layout, as a cinder CSI node plugin's log names it.
        assert_eq!(
            persistent_volume(&format!(
                "/var/lib/kubelet/pods/{uid}/volumes/kubernetes.io~csi/pvc-fa9fa290-bc41-4dd5-9263-63057d8575d9/mount"
            )),
            Some((uid, "pvc-fa9fa290-bc41-4dd5-9263-63057d8575d9"))
        );
        assert_eq!(
            persistent_volume(&format!(
                "/var/lib/kubelet/pods/{uid}/volumes/kubernetes.io~aws-ebs/pvc-1"
            )),
            Some((uid, "pvc-1"))
        );
        for local in [
            format!(
                "/var/lib/kubelet/pods/{uid}/volumes/kubernetes.io~projected/kube-api-access-x"
            ),
            format!("/var/lib/kubelet/pods/{uid}/volumes/kubernetes.io~secret/certs"),
            format!("/var/lib/kubelet/pods/{uid}/volume-subpaths/data/app/0"),
            "/var/lib/kubelet".to_owned(),
        ] {
            assert_eq!(persistent_volume(&local), None, "{local}");
        }
    }
    use crate::{parse::mountinfo, testing::fixture};

    fn points(c: &[Candidate]) -> Vec<&str> {
        c.iter().map(|c| c.info.mount_point.as_str()).collect()
    }

    #[test]
    fn real_k8s_node_keeps_the_real_filesystems() {
        let mounts = mountinfo::parse(&fixture("proc/hotsos-k8s-node-pid1-mountinfo")).unwrap();
        let c = select(mounts, |_| true);
        // Root ext4 holds every role; snap squashfs loops, cgroups, /run and the
        // containerd overlay rootfs are gone; /boot/efi stays as a plain filesystem.
        assert_eq!(c[0].info.mount_point, "/");
        assert_eq!(
            c[0].roles,
            [
                MountRole::Root,
                MountRole::Kubelet,
                MountRole::Images,
                MountRole::Logs
            ]
        );
        assert!(
            c.iter()
                .all(|c| c.info.fs_type != "squashfs" && c.info.fs_type != "overlay")
        );
        assert!(
            c.iter().all(|c| !c.info.mount_point.starts_with("/run")),
            "{:?}",
            points(&c)
        );
    }

    #[test]
    fn separate_image_and_kubelet_disks_get_their_roles() {
        let text = "\
21 0 8:1 / / rw,relatime - ext4 /dev/sda1 rw
30 21 8:17 / /var/lib/containerd rw,relatime - xfs /dev/sdb1 rw
31 21 8:33 / /var/lib/kubelet rw,relatime - ext4 /dev/sdc1 rw
32 31 8:33 /pods /var/lib/kubelet/pods rw,relatime - ext4 /dev/sdc1 rw
33 31 0:50 / /var/lib/kubelet/pods/abc/volumes/kubernetes.io~secret/token rw - tmpfs tmpfs rw
34 31 8:49 / /var/lib/kubelet/pods/abc/volumes/kubernetes.io~csi/pvc-1/mount rw - ext4 /dev/sdd rw
35 30 0:60 / /run/containerd/io.containerd.runtime.v2.task/k8s.io/abc/rootfs rw - overlay overlay rw
36 21 0:70 / /var/log rw - tmpfs tmpfs rw,size=1024k
";
        let c = select(mountinfo::parse(text).unwrap(), |p| {
            ["/var/lib/kubelet", "/var/lib/containerd", "/var/log"].contains(&p)
        });
        assert_eq!(
            points(&c),
            [
                "/",
                "/var/log",
                "/var/lib/kubelet",
                "/var/lib/containerd",
                "/var/lib/kubelet/pods/abc/volumes/kubernetes.io~csi/pvc-1/mount"
            ]
        );
        let roles: Vec<_> = c.iter().map(|c| c.roles.clone()).collect();
        assert_eq!(roles[0], [MountRole::Root]);
        assert_eq!(roles[1], [MountRole::Logs]);
        assert_eq!(roles[2], [MountRole::Kubelet]);
        assert_eq!(roles[3], [MountRole::Images]);
        assert_eq!(roles[4], [MountRole::Volume]);
    }

    #[test]
    fn nfs_mounted_three_times_over_counts_once() {
        let mounts = mountinfo::parse(&fixture(
            "proc/procfs-go-fixture-pid-mountinfo-nfs-overlay-xfs",
        ))
        .unwrap();
        let c = select(mounts, |_| false);
        // The last mount on a point hides the ones beneath it.
        assert_eq!(points(&c), ["/", "/mnt/nfs/test"]);
        assert_eq!(c[1].info.device_id, "0:44");
        assert_eq!(c[0].roles, [MountRole::Root]);
    }
}
