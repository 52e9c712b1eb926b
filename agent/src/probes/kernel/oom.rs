//! One OOM kill from the several lines the kernel writes about it.
//!
//! Kernels since 4.19 write `oom-kill:constraint=…,task_memcg=<cgroup>,task=<name>,pid=<pid>`
//! and then `… Killed process <pid> (<name>) …`; older ones name the cgroup first
//! (`Task in <cgroup> killed as a result of limit of …` on 4.x, `Memory cgroup stats for
//! <cgroup>:` on 3.10) and then `Killed process`. Each kill is counted once, from whichever
//! line comes first (`oom-kill:`, or `Kill process` before 4.19), with the cgroup from the
//! lines before it.

use crate::parse::cgroup_path::{self, PodCgroup};

/// What the kernel said about one kill.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OomKill {
    /// The killed process's name.
    pub process: Option<String>,
    /// Its PID.
    pub pid: Option<u64>,
    /// The cgroup the process was in, when the kernel said.
    pub cgroup: Option<String>,
    /// `memcg` (a cgroup's limit) or `global` (the node ran out).
    pub constraint: &'static str,
    /// The pod and container that cgroup belongs to.
    pub pod: Option<PodCgroup>,
}

impl OomKill {
    /// What the finding is about: the pod; else, for a kill at a cgroup's own limit (a
    /// systemd unit's `MemoryMax`, a slice), `cgroup <path>` (`cgroup ?` when the kernel did
    /// not say which); else the node, which ran out of memory (`""`).
    pub fn subject(&self) -> String {
        match (&self.pod, &self.cgroup) {
            (Some(pod), _) => format!("pod {}", pod.pod_uid),
            _ if self.constraint != "memcg" => String::new(),
            (None, Some(cgroup)) => format!("cgroup {cgroup}"),
            (None, None) => "cgroup ?".to_owned(),
        }
    }

    /// The kill as evidence fields.
    pub fn fields(&self) -> Vec<(String, String)> {
        let mut out = vec![("constraint".to_owned(), self.constraint.to_owned())];
        let mut add = |key: &str, value: Option<String>| {
            if let Some(value) = value {
                out.push((key.to_owned(), value));
            }
        };
        add("process", self.process.clone());
        add("pid", self.pid.map(|p| p.to_string()));
        add("cgroup", self.cgroup.clone());
        add("pod_uid", self.pod.as_ref().map(|p| p.pod_uid.clone()));
        add(
            "container_id",
            self.pod.as_ref().and_then(|p| p.container_id.clone()),
        );
        out
    }
}

/// Follows the kernel's OOM lines.
#[derive(Debug, Default)]
pub struct OomTracker {
    cgroup: Option<String>,
    /// A kill was counted from its first line; its `Killed process` line is still to come.
    awaiting: Awaiting,
}

/// Which `Killed process` line ends a kill already counted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Awaiting {
    #[default]
    Nothing,
    /// The one with this PID (after `oom-kill:`).
    Pid(u64),
    /// The next one (after `Kill process`, which may kill a child instead).
    Next,
}

impl OomTracker {
    /// Remembers what `message` says about the cgroup of a coming kill.
    pub fn context(&mut self, message: &str) {
        if let Some(rest) = message.strip_prefix("Memory cgroup stats for ") {
            self.cgroup = rest.split(':').next().map(str::to_owned);
        } else if let Some(rest) = message.strip_prefix("Task in ") {
            self.cgroup = rest.split(' ').next().map(str::to_owned);
        }
    }

    /// The kill a line the OOM rule matched counts, or `None` when it is the last line of
    /// a kill already counted.
    pub fn kill(&mut self, message: &str) -> Option<OomKill> {
        if let Some(fields) = message.strip_prefix("oom-kill:") {
            let field = |key: &str| {
                fields
                    .split(',')
                    .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
                    .map(str::to_owned)
            };
            let cgroup = field("task_memcg").or_else(|| field("oom_memcg"));
            let pid = field("pid").and_then(|p| p.parse().ok());
            self.cgroup = None;
            self.awaiting = pid.map_or(Awaiting::Nothing, Awaiting::Pid);
            return Some(OomKill {
                pod: cgroup.as_deref().and_then(cgroup_path::pod_of),
                constraint: match field("constraint").as_deref() {
                    Some("CONSTRAINT_MEMCG") => "memcg",
                    _ => "global",
                },
                process: field("task"),
                pid,
                cgroup,
            });
        }
        // "Kill process N (name) score S or sacrifice child" (before 4.19) chooses the
        // victim; "Killed process N (name) ..." ends every kill.
        let (killed, after) = match message.split_once("Killed process ") {
            Some((_, after)) => (true, after),
            None => (false, message.split_once("Kill process ")?.1),
        };
        let (pid, rest) = after.split_once(' ')?;
        let pid = pid.parse::<u64>().ok();
        if killed {
            let awaited = std::mem::take(&mut self.awaiting);
            if awaited == Awaiting::Next || pid.is_some_and(|p| awaited == Awaiting::Pid(p)) {
                return None;
            }
        } else {
            self.awaiting = Awaiting::Next;
        }
        let process = rest
            .strip_prefix('(')
            .and_then(|r| r.split_once(')'))
            .map(|(name, _)| name.to_owned());
        let cgroup = self.cgroup.take();
        Some(OomKill {
            pod: cgroup.as_deref().and_then(cgroup_path::pod_of),
            constraint: if message.starts_with("Memory cgroup out of memory")
                || cgroup.as_deref().is_some_and(|c| c != "/")
            {
                "memcg"
            } else {
                "global"
            },
            process,
            pid,
            cgroup,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_kernel_kill_counts_once_from_its_oom_kill_line() {
        let mut t = OomTracker::default();
        let kill = t.kill("oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=cri-containerd-ec9e.scope,mems_allowed=0-1,oom_memcg=/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podeded8c65_6e8e_4c6e_a889_3e427565c740.slice,task_memcg=/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podeded8c65_6e8e_4c6e_a889_3e427565c740.slice/cri-containerd-ec9ee26695deb4cc72bc665efff1cf3a03fdfb12f1303e02fe9252985e084a95.scope,task=pt_main_thread,pid=461754,uid=0").unwrap();
        assert_eq!(kill.constraint, "memcg");
        assert_eq!(kill.process.as_deref(), Some("pt_main_thread"));
        assert_eq!(kill.subject(), "pod eded8c65-6e8e-4c6e-a889-3e427565c740");
        assert_eq!(
            kill.pod.unwrap().container_id.as_deref(),
            Some("ec9ee26695deb4cc72bc665efff1cf3a03fdfb12f1303e02fe9252985e084a95")
        );
        assert_eq!(t.kill("Memory cgroup out of memory: Killed process 461754 (pt_main_thread) total-vm:1kB, anon-rss:1kB, file-rss:0kB, shmem-rss:0kB"), None);
    }

    #[test]
    fn an_old_kernel_kill_takes_its_cgroup_from_the_stats_line() {
        let mut t = OomTracker::default();
        t.context("Memory cgroup stats for /kubepods/pod95387fa4-da9c-11e7-9d36-5254b24cbf5e/6895a3e13439535852d3184ac2aadd26d7363cc035f171545ec7d4ce74073b0b: cache:32KB rss:524188KB");
        let kill = t
            .kill(
                "Memory cgroup out of memory: Kill process 24572 (java) score 0 or sacrifice child",
            )
            .unwrap();
        assert_eq!(kill.subject(), "pod 95387fa4-da9c-11e7-9d36-5254b24cbf5e");
        assert_eq!(kill.constraint, "memcg");
        assert_eq!(kill.pid, Some(24572));
        assert_eq!(
            t.kill("Killed process 28438 (java) total-vm:20255636kB, anon-rss:466160kB, file-rss:13684kB"),
            None,
            "the child killed in its place is the same kill"
        );
        // The next kill without a first line counts from its `Killed process` line.
        assert!(t.kill("Killed process 28500 (java) total-vm:1kB").is_some());
    }

    #[test]
    fn a_global_kill_is_about_the_node() {
        let mut t = OomTracker::default();
        let kill = t.kill("oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,task_memcg=/user.slice/user-121.slice/session-c1.scope,task=gnome-shell,pid=955,uid=121").unwrap();
        assert_eq!((kill.constraint, kill.subject()), ("global", String::new()));
        let kill = t
            .kill("Killed process 1012 (heapster) total-vm:327128kB, anon-rss:306328kB, file-rss:11132kB")
            .unwrap();
        assert_eq!((kill.constraint, kill.subject()), ("global", String::new()));
    }
}
