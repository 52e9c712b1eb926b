//! The inotify probe: each user's inotify instances and watches against the kernel's
//! per-user limits (`fs.inotify.max_user_instances`, `max_user_watches`). When a user runs
//! out, the kubelet, container runtimes and log tailers fail with "too many open files" or
//! "no space left on device" while the node looks fine; none of the usual peers checks it.
//!
//! The kernel keeps no per-user count a file shows, so the probe counts: every open file
//! descriptor of every process under `/proc` (`anon_inode:inotify` ones are instances; their
//! `fdinfo` lists one `inotify wd:` line per watch), charged to the process's effective UID
//! as the kernel charges them. A scan reads every descriptor of the node, so it runs once
//! per `every` (default 1m) and the report between carries its last result.

use std::{
    collections::BTreeMap,
    sync::Mutex,
    time::{Duration, SystemTime},
};

use nodemedic_proto::{
    checks,
    time::timestamp,
    v1::{Evidence, Finding, InotifySection, InotifyUser, Severity},
};
use serde::Deserialize;

use super::{Probe, ProbeContext, ProbeError, ProbeOutput, Section};
use crate::{
    host::HostRoot,
    units::{Percent, percent},
};

/// Processes named per user in the section.
const TOP: usize = 3;

/// When to scan and what is too much.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InotifyConfig {
    /// Count at all (default true).
    pub enabled: bool,
    /// Time between two scans of every descriptor (default 1m).
    #[serde(with = "humantime_serde")]
    pub every: Duration,
    /// A user's instances or watches at this share of the limit is a warning (default 80%).
    pub warn_used: Percent,
}

impl Default for InotifyConfig {
    fn default() -> Self {
        InotifyConfig {
            enabled: true,
            every: Duration::from_secs(60),
            warn_used: Percent::of(80.0),
        }
    }
}

impl InotifyConfig {
    /// `every` must be more than nothing.
    pub fn validate(&self) -> Result<(), String> {
        if self.every.is_zero() {
            return Err("every must be more than 0s".into());
        }
        Ok(())
    }
}

/// Counts inotify use; keeps the last scan.
#[derive(Debug)]
pub struct InotifyProbe {
    config: InotifyConfig,
    last: Mutex<Option<InotifySection>>,
}

impl InotifyProbe {
    /// A probe with `config`; it scans at its first run.
    pub fn new(config: InotifyConfig) -> Self {
        InotifyProbe {
            config,
            last: Mutex::new(None),
        }
    }
}

impl Probe for InotifyProbe {
    fn id(&self) -> &'static str {
        "inotify"
    }

    fn run(&self, ctx: &ProbeContext) -> Result<ProbeOutput, ProbeError> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let due = last.as_ref().is_none_or(|s| {
            let at = s
                .scanned_at
                .as_ref()
                .map(nodemedic_proto::time::system_time)
                .unwrap_or(SystemTime::UNIX_EPOCH);
            ctx.now.duration_since(at).unwrap_or_default() >= self.config.every
        });
        if due {
            *last = Some(scan(&ctx.host, ctx.now)?);
        }
        let section = last.clone().unwrap_or_default();
        Ok(ProbeOutput {
            findings: judge(&section, self.config.warn_used),
            section: Section::Inotify(section),
        })
    }
}

/// What one process holds.
#[derive(Default)]
struct Held {
    instances: u64,
    watches: u64,
}

/// Counts every process's inotify descriptors under `host`'s `/proc`. Processes that exit
/// while being read are skipped.
pub fn scan(host: &HostRoot, now: SystemTime) -> Result<InotifySection, ProbeError> {
    let max_user_instances = host.read_u64("/proc/sys/fs/inotify/max_user_instances")?;
    let max_user_watches = host.read_u64("/proc/sys/fs/inotify/max_user_watches")?;
    let proc_dir = host.path("/proc");
    let entries = std::fs::read_dir(&proc_dir).map_err(|source| {
        ProbeError::Host(crate::host::HostError::Io {
            path: proc_dir.clone(),
            source,
        })
    })?;
    let mut users: BTreeMap<u32, (Held, Vec<(u64, String)>)> = BTreeMap::new();
    let mut fds_scanned = 0;
    for entry in entries.filter_map(Result::ok) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let dir = entry.path();
        let held = held_by(&dir, &mut fds_scanned);
        if held.instances == 0 {
            continue;
        }
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        let Some(uid) = effective_uid(&status) else {
            continue;
        };
        let name = status
            .lines()
            .find_map(|l| l.strip_prefix("Name:"))
            .map(str::trim)
            .unwrap_or("?");
        let (total, top) = users.entry(uid).or_default();
        total.instances += held.instances;
        total.watches += held.watches;
        top.push((held.watches, format!("{name}[{pid}] {}", held.watches)));
    }
    let mut users: Vec<InotifyUser> = users
        .into_iter()
        .map(|(uid, (held, mut top))| {
            top.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
            InotifyUser {
                uid,
                instances: held.instances,
                watches: held.watches,
                top: top.into_iter().take(TOP).map(|(_, t)| t).collect(),
            }
        })
        .collect();
    users.sort_by(|a, b| b.watches.cmp(&a.watches).then(a.uid.cmp(&b.uid)));
    Ok(InotifySection {
        max_user_instances,
        max_user_watches,
        users,
        fds_scanned,
        scanned_at: Some(timestamp(now)),
    })
}

/// The inotify instances and watches of the process at `dir` (`/proc/<pid>`), counting the
/// descriptors looked at into `scanned`.
fn held_by(dir: &std::path::Path, scanned: &mut u64) -> Held {
    let mut held = Held::default();
    let Ok(fds) = std::fs::read_dir(dir.join("fd")) else {
        return held;
    };
    for fd in fds.filter_map(Result::ok) {
        *scanned += 1;
        let is_inotify = std::fs::read_link(fd.path())
            .is_ok_and(|target| target.as_os_str() == "anon_inode:inotify");
        if !is_inotify {
            continue;
        }
        held.instances += 1;
        let info =
            std::fs::read_to_string(dir.join("fdinfo").join(fd.file_name())).unwrap_or_default();
        held.watches += info
            .lines()
            .filter(|l| l.starts_with("inotify wd:"))
            .count() as u64;
    }
    held
}

/// The effective UID of a `/proc/<pid>/status` (`Uid: real effective saved fs`).
fn effective_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// A finding per user at or above `warn` of a limit.
pub fn judge(s: &InotifySection, warn: Percent) -> Vec<Finding> {
    let mut out = vec![];
    for u in &s.users {
        for (check, used, max, what, sysctl) in [
            (
                checks::INOTIFY_INSTANCES,
                u.instances,
                s.max_user_instances,
                "instances",
                "fs.inotify.max_user_instances",
            ),
            (
                checks::INOTIFY_WATCHES,
                u.watches,
                s.max_user_watches,
                "watches",
                "fs.inotify.max_user_watches",
            ),
        ] {
            let share = percent(used, max);
            if max == 0 || share < warn.get() {
                continue;
            }
            let subject = format!("uid {}", u.uid);
            out.push(
                Finding::fail(
                    check,
                    Severity::Warning,
                    &subject,
                    format!(
                        "UID {} holds {used} inotify {what} of the {max} {sysctl} allows ({share:.0}%); at the limit the kubelet, the runtime and log tailers fail with \"too many open files\". Most: {}.",
                        u.uid,
                        u.top.join(", ")
                    ),
                )
                .with(Evidence::count("used", used))
                .with(Evidence::count("limit", max))
                .with(Evidence::percent("used_percent", share))
                .with(Evidence::text("top", u.top.join(", "))),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeHost;

    /// A process in the fake tree holding `instances` inotify descriptors of `watches` each.
    fn process(host: &FakeHost, pid: u32, name: &str, uid: u32, instances: u32, watches: u32) {
        host.write(
            &format!("/proc/{pid}/status"),
            &format!("Name:\t{name}\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n"),
        );
        let fd_dir = host.root().path(&format!("/proc/{pid}/fd"));
        std::fs::create_dir_all(&fd_dir).unwrap();
        // A regular file descriptor beside them.
        std::os::unix::fs::symlink("/var/log/syslog", fd_dir.join("3")).unwrap();
        for i in 0..instances {
            let fd = 10 + i;
            std::os::unix::fs::symlink("anon_inode:inotify", fd_dir.join(fd.to_string())).unwrap();
            let mut info = String::from("pos:\t0\nflags:\t02004000\nmnt_id:\t15\nino:\t1057\n");
            for wd in 1..=watches {
                info.push_str(&format!(
                    "inotify wd:{wd} ino:{wd:x} sdev:800001 mask:fc6 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:0000000000000000\n"
                ));
            }
            host.write(&format!("/proc/{pid}/fdinfo/{fd}"), &info);
        }
    }

    fn limits(host: &FakeHost, instances: u64, watches: u64) {
        host.write(
            "/proc/sys/fs/inotify/max_user_instances",
            &format!("{instances}\n"),
        );
        host.write(
            "/proc/sys/fs/inotify/max_user_watches",
            &format!("{watches}\n"),
        );
    }

    #[test]
    fn users_near_a_limit_are_named_with_their_processes() {
        let host = FakeHost::new();
        limits(&host, 128, 8192);
        process(&host, 812, "kubelet", 0, 60, 20);
        process(&host, 900, "containerd", 0, 50, 2);
        process(&host, 4242, "promtail", 10001, 2, 3400);
        let section = scan(&host.root(), SystemTime::now()).unwrap();
        let root = section.users.iter().find(|u| u.uid == 0).unwrap();
        assert_eq!((root.instances, root.watches), (110, 60 * 20 + 50 * 2));
        assert_eq!(root.top[0], "kubelet[812] 1200");
        let findings = judge(&section, Percent::of(80.0));
        let got: Vec<(&str, &str)> = findings
            .iter()
            .map(|f| (f.check.as_str(), f.subject.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (checks::INOTIFY_WATCHES, "uid 10001"),
                (checks::INOTIFY_INSTANCES, "uid 0"),
            ]
        );
        assert!(
            findings[1].message.contains("kubelet[812]"),
            "{}",
            findings[1].message
        );
    }

    #[test]
    fn the_real_proc_counts_the_instances_this_process_opens() {
        let me = std::path::PathBuf::from(format!("/proc/{}", std::process::id()));
        let mut scanned = 0;
        let before = held_by(&me, &mut scanned);
        let dir = tempfile::tempdir().unwrap();
        let held: Vec<_> = (0..5)
            .map(|_| {
                let fd =
                    rustix::fs::inotify::init(rustix::fs::inotify::CreateFlags::CLOEXEC).unwrap();
                for _ in 0..3 {
                    let sub = tempfile::tempdir_in(dir.path()).unwrap().keep();
                    rustix::fs::inotify::add_watch(
                        &fd,
                        &sub,
                        rustix::fs::inotify::WatchFlags::CREATE,
                    )
                    .unwrap();
                }
                fd
            })
            .collect();
        let after = held_by(&me, &mut scanned);
        assert!(
            after.instances >= before.instances + 5 && after.watches >= before.watches + 15,
            "before {}/{}, after {}/{}",
            before.instances,
            before.watches,
            after.instances,
            after.watches
        );
        // And the whole node's scan reads the real limits and charges this process's UID.
        let node = scan(&HostRoot::new("/"), SystemTime::now()).unwrap();
        let uid = rustix::process::geteuid().as_raw();
        let mine = node.users.iter().find(|u| u.uid == uid).expect("this UID");
        assert!(mine.instances >= 5 && node.max_user_instances > 0 && node.fds_scanned > 0);
        drop(held);
    }
}
