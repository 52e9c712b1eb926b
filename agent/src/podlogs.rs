//! The ends of pods' container logs, read from the kubelet's `/var/log/pods` for a bundle
//! (what an engineer would otherwise `kubectl logs --previous` for), on the collector's
//! request and never with the reports.
//!
//! The kubelet keeps each container's log at
//! `/var/log/pods/<namespace>_<pod>_<uid>/<container>/<restart count>.log`: the highest
//! number is the running container's, the one before it the previous run's (rotated
//! copies, `0.log.20240101-120000[.gz]`, are left out). Only the last bytes of a file are
//! read, so a large log costs no more than a small one.

use std::{
    io::{Read, Seek, SeekFrom},
    path::Path,
};

use nodemedic_proto::v1::{ContainerLog, LogsRequest, PodLogs};
use tracing::debug;

use crate::host::HostRoot;

/// Where the kubelet writes pods' logs.
const PODS_LOG_DIR: &str = "/var/log/pods";
/// Bytes read from the end of one file at most, whatever the line budget.
const TAIL_BYTES: u64 = 256 * 1024;

/// Reads the logs `request` asks for under `host`.
pub fn read(host: &HostRoot, request: &LogsRequest) -> PodLogs {
    let mut answer = PodLogs {
        request_id: request.request_id.clone(),
        ..PodLogs::default()
    };
    let dir = host.path(PODS_LOG_DIR);
    let pods = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .collect::<Vec<String>>(),
        Err(e) => {
            answer.error = format!("{PODS_LOG_DIR}: {e}");
            return answer;
        }
    };
    let mut budget = request.max_bytes;
    if budget == 0 {
        return answer;
    }
    for wanted in &request.pods {
        // Names cannot hold `_`: the prefix names one pod (any of its UIDs).
        let prefix = format!("{}_{}_", wanted.namespace, wanted.name);
        for pod_dir in pods.iter().filter(|d| d.starts_with(&prefix)) {
            let Ok(containers) = std::fs::read_dir(dir.join(pod_dir)) else {
                continue;
            };
            let mut names: Vec<String> = containers
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .filter_map(|e| e.file_name().into_string().ok())
                .collect();
            names.sort();
            for container in names {
                let runs = runs(&dir.join(pod_dir).join(&container));
                // The previous run's log (when there is one), then the current one's.
                let last_two = &runs[runs.len().saturating_sub(2)..];
                for (i, path) in last_two.iter().enumerate() {
                    let previous = last_two.len() == 2 && i == 0;
                    match tail(path, request.max_lines as usize, budget) {
                        // Not one whole line fits in what is left: the answer is full.
                        Ok((text, true)) if text.is_empty() => return answer,
                        Ok((text, truncated)) => {
                            budget = budget.saturating_sub(text.len() as u64);
                            answer.logs.push(ContainerLog {
                                namespace: wanted.namespace.clone(),
                                pod: wanted.name.clone(),
                                container: container.clone(),
                                previous,
                                text,
                                truncated,
                            });
                        }
                        Err(e) => {
                            debug!(message = "Skipping an unreadable log.", path = %path.display(), error = %e)
                        }
                    }
                }
            }
        }
    }
    answer
}

/// A container's `<n>.log` files, by `n`.
fn runs(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut runs: Vec<(u64, std::path::PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let n = name.strip_suffix(".log")?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    runs.sort();
    runs.into_iter().map(|(_, p)| p).collect()
}

/// The last `max_lines` whole lines of `path` in at most `budget` bytes, and whether any
/// were left out before them.
fn tail(path: &Path, max_lines: usize, budget: u64) -> std::io::Result<(String, bool)> {
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let start = len.saturating_sub(TAIL_BYTES.min(budget));
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::with_capacity((len - start) as usize);
    file.take(len - start).read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    // A read that starts inside a line drops that part line.
    let whole = if start > 0 {
        text.split_once('\n').map_or("", |(_, rest)| rest)
    } else {
        &text
    };
    let lines: Vec<&str> = whole.lines().collect();
    let kept = &lines[lines.len().saturating_sub(max_lines)..];
    let truncated = start > 0 || kept.len() < lines.len();
    let mut out = kept.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    Ok((out, truncated))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeHost;
    use nodemedic_proto::v1::PodRef;

    fn request(pods: &[(&str, &str)], max_lines: u32, max_bytes: u64) -> LogsRequest {
        LogsRequest {
            request_id: "r1".into(),
            pods: pods
                .iter()
                .map(|(namespace, name)| PodRef {
                    namespace: (*namespace).into(),
                    name: (*name).into(),
                })
                .collect(),
            max_lines,
            max_bytes,
        }
    }

    /// The kubelet's layout: a container restarted twice (0, 1, 2.log) and a rotated copy,
    /// its CRI log lines as containerd writes them.
    #[test]
    fn the_current_and_previous_runs_last_lines_within_the_budget() {
        let host = FakeHost::new();
        let dir =
            "/var/log/pods/shop_cart-7d9f8b6c5-x2k4q_2a1e7c3e-9c1f-4c55-8f37-0e1c1b9e4d21/cart";
        let line = |run: u32, i: u32| {
            format!("2024-05-14T14:0{run}:{i:02}.123456789Z stdout F run {run} line {i}\n")
        };
        for run in 0..3 {
            let text: String = (0..50).map(|i| line(run, i)).collect();
            host.write(&format!("{dir}/{run}.log"), &text);
        }
        host.write(&format!("{dir}/2.log.20240514-140000"), "rotated\n");
        host.write(
            "/var/log/pods/shop_other-5c9d_11111111-2222-4333-8444-555555555555/web/0.log",
            "not asked for\n",
        );
        let answer = read(
            &host.root(),
            &request(&[("shop", "cart-7d9f8b6c5-x2k4q")], 10, 1 << 20),
        );
        assert_eq!(answer.error, "");
        assert_eq!(answer.logs.len(), 2, "{answer:#?}");
        let previous = &answer.logs[0];
        assert!(previous.previous);
        assert!(previous.truncated);
        assert_eq!(previous.text.lines().count(), 10);
        assert!(previous.text.starts_with(&line(1, 40)), "{}", previous.text);
        let current = &answer.logs[1];
        assert!(!current.previous);
        assert!(current.text.ends_with(&line(2, 49)));
        assert_eq!(current.container, "cart");

        // A byte budget smaller than one log: whole lines only, and nothing after it.
        let small = read(
            &host.root(),
            &request(&[("shop", "cart-7d9f8b6c5-x2k4q")], 100, 200),
        );
        assert_eq!(small.logs.len(), 1, "{small:#?}");
        assert!(small.logs[0].text.len() <= 200);
        assert!(small.logs[0].text.ends_with(&line(1, 49)));

        let none = read(&FakeHost::new().root(), &request(&[("shop", "x")], 10, 100));
        assert!(none.error.contains("/var/log/pods"), "{}", none.error);
    }
}
