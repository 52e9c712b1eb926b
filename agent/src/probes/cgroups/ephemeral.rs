//! A pod's ephemeral storage as the kubelet counts it: its emptyDir volumes
//! (`/var/lib/kubelet/pods/<uid>/volumes/kubernetes.io~empty-dir/`) and its container logs
//! (`/var/log/pods/<namespace>_<name>_<uid>/`), in bytes of disk used.

use std::{collections::HashMap, os::unix::fs::MetadataExt, path::Path};

use crate::host::HostRoot;

/// Files looked at per measurement at most, so a pod with millions of files cannot stall
/// the probe; past it the sums are lower bounds.
const MAX_FILES: usize = 200_000;

/// Bytes per pod UID, and whether the file budget ran out.
pub fn measure(host: &HostRoot, uids: &[&str]) -> (HashMap<String, u64>, bool) {
    let mut budget = MAX_FILES;
    let mut out = HashMap::new();
    let logs: Vec<(String, std::path::PathBuf)> = std::fs::read_dir(host.path("/var/log/pods"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
                .collect()
        })
        .unwrap_or_default();
    for uid in uids {
        let suffix = format!("_{uid}");
        let mut bytes = disk_usage(
            &host.path(&format!(
                "/var/lib/kubelet/pods/{uid}/volumes/kubernetes.io~empty-dir"
            )),
            &mut budget,
        );
        for (_, dir) in logs.iter().filter(|(name, _)| name.ends_with(&suffix)) {
            bytes += disk_usage(dir, &mut budget);
        }
        out.insert((*uid).to_owned(), bytes);
    }
    (out, budget == 0)
}

/// Disk bytes under `dir` (allocated blocks, as `du` counts), not following links.
fn disk_usage(dir: &Path, budget: &mut usize) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut total = 0;
    for entry in entries.flatten() {
        if *budget == 0 {
            break;
        }
        *budget -= 1;
        let Ok(meta) = entry.path().symlink_metadata() else {
            continue;
        };
        if meta.is_dir() {
            total += disk_usage(&entry.path(), budget);
        } else {
            total += meta.blocks() * 512;
        }
    }
    total
}
