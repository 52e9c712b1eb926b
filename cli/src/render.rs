//! Human-readable views of a report, its findings and incidents, shared by `doctor`,
//! `node` and `incident`.

use std::time::SystemTime;

use nodemedic_proto::{
    Timestamp,
    finding::human_bytes,
    time::system_time,
    v1::{
        Finding, ImageRuntime, Incident, IncidentScope, IncidentState, MountRole, NodeReport,
        Remediation,
    },
};

use crate::table::{Table, age};

fn pct(part: u64, whole: u64) -> String {
    if whole == 0 {
        "-".into()
    } else {
        format!("{:.0}%", part as f64 * 100.0 / whole as f64)
    }
}

fn roles(roles: &[i32]) -> String {
    roles
        .iter()
        .filter_map(|r| MountRole::try_from(*r).ok())
        .map(MountRole::label)
        .collect::<Vec<_>>()
        .join(",")
}

/// The measurements of a report: filesystems, memory, kernel tables.
pub fn report(r: &NodeReport) -> String {
    let mut out = String::new();
    if let Some(disk) = &r.disk {
        let mut t = Table::new(&[
            "MOUNT", "ROLES", "SIZE", "USED", "AVAIL", "USE%", "IUSE%", "FULL IN", "BUSY",
        ]);
        for m in &disk.mounts {
            t.row(vec![
                m.mount_point.clone(),
                roles(&m.roles),
                human_bytes(m.bytes_total as f64),
                human_bytes(m.bytes_used as f64),
                human_bytes(m.bytes_available as f64),
                pct(
                    m.bytes_total - m.bytes_available.min(m.bytes_total),
                    m.bytes_total,
                ),
                pct(m.inodes_used, m.inodes_total),
                m.full_in_hours.map_or("-".into(), |h| format!("{h:.1}h")),
                m.busy_percent.map_or("-".into(), |b| format!("{b:.0}%")),
            ]);
        }
        out.push_str("Filesystems:\n");
        out.push_str(&t.render("  "));
        if let Some(p) = &disk.io_pressure {
            out.push_str(&format!(
                "I/O:      pressure some {:.1}% full {:.1}% (avg60)\n",
                p.some_avg60, p.full_avg60
            ));
        }
    }
    if let Some(m) = &r.memory {
        let swap = if m.swap_total_bytes == 0 {
            "off".to_owned()
        } else {
            format!(
                "{} of {} used",
                human_bytes((m.swap_total_bytes - m.swap_free_bytes) as f64),
                human_bytes(m.swap_total_bytes as f64)
            )
        };
        let psi = m.pressure.as_ref().map_or("n/a".into(), |p| {
            format!(
                "some {:.1}% full {:.1}% (avg60)",
                p.some_avg60, p.full_avg60
            )
        });
        out.push_str(&format!(
            "Memory:   {} available of {} ({}), swap {swap}, pressure {psi}, OOM kills since boot {}\n",
            human_bytes(m.available_bytes as f64),
            human_bytes(m.total_bytes as f64),
            pct(m.available_bytes, m.total_bytes),
            m.oom_kills_total,
        ));
        if !m.top_processes.is_empty() {
            let top: Vec<String> = m
                .top_processes
                .iter()
                .map(|p| format!("{}[{}] {}", p.name, p.pid, human_bytes(p.rss_bytes as f64)))
                .collect();
            out.push_str(&format!("          largest: {}\n", top.join(", ")));
        }
    }
    if let Some(s) = &r.system {
        let conntrack = match (s.conntrack_entries, s.conntrack_max) {
            (Some(used), Some(max)) => format!("{used}/{max}"),
            _ => "not loaded".into(),
        };
        out.push_str(&format!(
            "System:   kernel {}, PIDs {}/{}, file handles {}/{}, conntrack {conntrack}\n",
            s.kernel_release, s.pids_in_use, s.pid_max, s.open_files, s.file_max
        ));
    }
    if let Some(c) = &r.clock {
        let sync = if c.synchronised {
            "synchronised".to_owned()
        } else {
            match c.unsynchronised_for_seconds {
                Some(s) if s >= 1.0 => format!(
                    "NOT synchronised for {}",
                    humantime::format_duration(std::time::Duration::from_secs(s as u64))
                ),
                _ => "NOT synchronised".to_owned(),
            }
        };
        out.push_str(&format!(
            "Clock:    {sync}, offset {:.1} ms, maximum error {:.0} ms\n",
            c.offset_ms, c.max_error_ms
        ));
    }
    if let Some(i) = &r.inotify
        && let Some(u) = i.users.first()
    {
        out.push_str(&format!(
            "inotify:  most watches: uid {} with {}/{} instances, {}/{} watches ({})\n",
            u.uid,
            u.instances,
            i.max_user_instances,
            u.watches,
            i.max_user_watches,
            u.top.join(", ")
        ));
    }
    if let Some(s) = &r.services {
        let mut parts = vec![];
        if s.kubelet_expected {
            parts.push(format!(
                "kubelet {} ({})",
                s.kubelet_answer, s.kubelet_healthz
            ));
        }
        for rt in &s.runtimes {
            let state = if rt.error.is_empty() {
                let conditions: Vec<String> = rt
                    .conditions
                    .iter()
                    .map(|c| {
                        if c.status {
                            c.r#type.clone()
                        } else {
                            format!("{}=false ({})", c.r#type, c.reason)
                        }
                    })
                    .collect();
                format!("{}: {}", rt.version, conditions.join(", "))
            } else {
                format!("{}: {}", rt.endpoint, rt.error)
            };
            parts.push(state);
        }
        if !parts.is_empty() {
            out.push_str(&format!("Services: {}\n", parts.join("; ")));
        }
    }
    if let Some(j) = &r.journal
        && !j.directories.is_empty()
    {
        out.push_str(&format!(
            "Journal:  {} files, {} entries read, {} matching{}\n",
            j.files,
            j.entries_read,
            j.entries_matched,
            if j.behind {
                " (behind: more to read)"
            } else {
                ""
            }
        ));
    }
    if let Some(c) = &r.certs
        && !c.certificates.is_empty()
    {
        let parts: Vec<String> = c
            .certificates
            .iter()
            .map(|cert| match &cert.not_after {
                _ if !cert.error.is_empty() => {
                    format!("{} {}: {}", cert.role, cert.path, cert.error)
                }
                Some(t) => format!(
                    "{} until {}",
                    cert.role,
                    humantime::format_rfc3339_seconds(nodemedic_proto::time::system_time(t))
                ),
                None => format!("{} {}", cert.role, cert.path),
            })
            .collect();
        out.push_str(&format!("Certs:    {}\n", parts.join("; ")));
    }
    if let Some(n) = &r.net
        && !n.interfaces.is_empty()
    {
        out.push_str(&format!("Network:  {}\n", net(n)));
    }
    if let Some(d) = &r.dns {
        out.push_str(&dns(d));
    }
    for i in r.images.iter().flat_map(|s| &s.runtimes) {
        out.push_str(&images(i));
    }
    if let Some(p) = &r.pods {
        let conditions: Vec<String> = p
            .node_conditions
            .iter()
            .map(|c| format!("{}={}", c.condition, c.status))
            .collect();
        out.push_str(&format!(
            "Pods:     {} pods, {} containers ({} not ready, {} restarts); node {}; from {}\n",
            p.pods,
            p.containers,
            p.containers_not_ready,
            p.restarts,
            conditions.join(" "),
            p.api_server
        ));
        if let Some(n) = &p.node {
            out.push_str(&format!(
                "Node:     {}/{} pods, requests cpu {:.2}/{:.2}, memory {}/{} allocatable{}; kubelet {}, {}, kernel {}\n",
                n.pods_active,
                n.pods_capacity,
                n.cpu_requested_millis as f64 / 1000.0,
                n.cpu_allocatable_millis as f64 / 1000.0,
                human_bytes(n.memory_requested_bytes as f64),
                human_bytes(n.memory_allocatable_bytes as f64),
                if n.unschedulable { "; cordoned" } else { "" },
                n.kubelet_version,
                n.container_runtime_version,
                n.kernel_version,
            ));
        }
    }
    if let Some(k) = &r.kernel {
        let matched: u64 = k.events.iter().map(|e| e.count).sum();
        let missed = if k.records_missed > 0 {
            format!(", {} records lost before they were read", k.records_missed)
        } else {
            String::new()
        };
        out.push_str(&format!(
            "Kernel:   {}: {} lines read, {matched} matching lines in the window{missed}\n",
            k.source, k.lines_read
        ));
    }
    let slow: Vec<String> = r
        .probes
        .iter()
        .map(|p| {
            format!(
                "{} {:.1} ms{}",
                p.probe,
                p.duration_micros as f64 / 1000.0,
                if p.ok { "" } else { " (failed)" }
            )
        })
        .collect();
    if !slow.is_empty() {
        out.push_str(&format!("Probes:   {}\n", slow.join(", ")));
    }
    out
}

/// Findings as a table, worst first.
pub fn findings(findings: &[Finding], now: SystemTime) -> String {
    let mut sorted: Vec<&Finding> = findings.iter().collect();
    sorted.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.check.cmp(&b.check))
            .then_with(|| a.subject.cmp(&b.subject))
    });
    let mut t = Table::new(&["SEVERITY", "NODE", "CHECK", "SUBJECT", "AGE", "MESSAGE"]);
    for f in sorted {
        let unknown = f.status() == nodemedic_proto::v1::FindingStatus::Unknown;
        t.row(vec![
            format!("{}{}", f.severity().label(), if unknown { "?" } else { "" }),
            f.node.clone(),
            f.check.clone(),
            f.subject.clone(),
            f.first_seen
                .as_ref()
                .map(|t| age(system_time(t), now))
                .unwrap_or_default(),
            f.message.clone(),
        ]);
    }
    t.render("  ")
}

/// Incidents, each with its findings and what to do; "healthy" when there are none.
pub fn incidents(incidents: &[Incident], now: SystemTime) -> String {
    if incidents.is_empty() {
        return "No incidents: healthy.\n".into();
    }
    incidents
        .iter()
        .map(|i| format!("\n{}", incident(i, now, false)))
        .collect()
}

/// One incident: what, where, since when, its findings, what to do; with `timeline`, its
/// history too.
pub fn incident(i: &Incident, now: SystemTime, timeline: bool) -> String {
    let ago = |t: &Option<Timestamp>| {
        t.as_ref()
            .map_or("-".into(), |t| format!("{} ago", age(system_time(t), now)))
    };
    let mut out = format!(
        "Incident {} [{}, {}, {}]: {}\n",
        i.id,
        i.severity().label(),
        match i.scope() {
            IncidentScope::Cluster => "cluster",
            _ => "node",
        },
        match i.state() {
            IncidentState::Resolved => "resolved",
            _ => "open",
        },
        i.title
    );
    out.push_str(&format!("  {}\n", i.summary));
    if !i.severity_reason.is_empty() {
        out.push_str(&format!(
            "  {}:  more than its findings, because {}\n",
            i.severity().label(),
            i.severity_reason
        ));
    }
    out.push_str(&format!("  nodes:   {}\n", i.nodes.join(", ")));
    if !i.objects.is_empty() {
        out.push_str(&format!("  objects: {}\n", i.objects.join(", ")));
    }
    out.push_str(&format!(
        "  seen:    first {}, last {}{}\n",
        ago(&i.first_seen),
        ago(&i.last_seen),
        i.resolved_at
            .as_ref()
            .map(|_| format!(", resolved {}", ago(&i.resolved_at)))
            .unwrap_or_default()
    ));
    if let Some(at) = &i.failure_expected_at {
        let at = system_time(at);
        let when = match at.duration_since(now) {
            Ok(d) => format!("in {}", age(now, now + d)),
            Err(_) => "now".into(),
        };
        out.push_str(&format!("  expected to fail: {when}\n"));
    }
    out.push_str(&findings(&i.findings, now));
    if let Some(r) = &i.remediation {
        let node = match i.nodes.as_slice() {
            [one] => one.as_str(),
            _ => "<node>",
        };
        out.push_str(&remediation(r, node, "  "));
    }
    if timeline {
        out.push_str("  timeline:\n");
        for e in &i.timeline {
            out.push_str(&format!("    {:>8}  {}\n", ago(&e.at), e.text));
        }
    }
    out
}

fn images(r: &ImageRuntime) -> String {
    if !r.error.is_empty() {
        return format!("Images:   {} at {}: {}\n", r.kind, r.endpoint, r.error);
    }
    let mut out = format!(
        "Images:   {} ({}): {} images, {} in use, {}; reclaimable {}; {} dangling ({}); on {} ({} of {} available)\n",
        r.version,
        r.endpoint,
        r.images,
        r.images_in_use,
        human_bytes(r.images_bytes as f64),
        human_bytes(r.reclaimable_bytes as f64),
        r.dangling,
        human_bytes(r.dangling_bytes as f64),
        r.mount_point,
        human_bytes(r.fs_available_bytes as f64),
        human_bytes(r.fs_total_bytes as f64),
    );
    if r.kind == "docker" {
        out.push_str(&format!(
            "          stopped containers {} ({}), unused volumes {} ({}), build cache {} ({} reclaimable)\n",
            r.stopped_containers,
            human_bytes(r.stopped_containers_bytes as f64),
            r.unused_volumes,
            human_bytes(r.unused_volumes_bytes as f64),
            human_bytes(r.build_cache_bytes as f64),
            human_bytes(r.build_cache_reclaimable_bytes as f64),
        ));
    }
    out
}

/// `eth0 up (default route), bond0 up 1/2 slaves`: each interface's link, and its loss
/// over the window once there is one.
fn net(n: &nodemedic_proto::v1::NetSection) -> String {
    let parts: Vec<String> = n
        .interfaces
        .iter()
        .map(|i| {
            let mut s = format!("{} {}", i.name, i.operstate);
            if i.carrier == Some(false) {
                s.push_str(" NO CARRIER");
            }
            if i.default_route {
                s.push_str(" (default route)");
            }
            if let (Some(rx), Some(tx)) = (i.rx_loss_percent, i.tx_loss_percent) {
                s.push_str(&format!(", lost rx {rx:.1}% tx {tx:.1}%"));
            }
            if let Some(b) = n.bonds.iter().find(|b| b.name == i.name) {
                let up = b.slaves.iter().filter(|s| s.mii_status == "up").count();
                s.push_str(&format!(", {up}/{} slaves up", b.slaves.len()));
            }
            s
        })
        .collect();
    parts.join("; ")
}

fn dns(d: &nodemedic_proto::v1::DnsSection) -> String {
    let mut out = String::new();
    for conf in [&d.node, &d.pod].into_iter().flatten() {
        out.push_str(&format!(
            "DNS:      {}: nameservers {}, {} search domains, ndots {} ({} queries per external lookup with AAAA)\n",
            conf.path,
            if conf.nameservers.is_empty() { "<none>".to_owned() } else { conf.nameservers.join(" ") },
            conf.search.len(),
            conf.ndots,
            conf.queries_per_external_lookup_with_aaaa
        ));
    }
    if !d.probes.is_empty() {
        let mut t = Table::new(&[
            "NAMESERVER",
            "PROTO",
            "NAME",
            "LAST",
            "P50",
            "P95",
            "TIMEOUTS",
            "SAMPLES",
        ]);
        for p in &d.probes {
            t.row(vec![
                p.nameserver.clone(),
                p.protocol.clone(),
                p.name.clone(),
                p.last_outcome.clone(),
                format!("{:.1}ms", p.p50_ms),
                format!("{:.1}ms", p.p95_ms),
                p.timeouts.to_string(),
                p.samples.to_string(),
            ]);
        }
        out.push_str(&t.render("  "));
    }
    out
}

/// A remediation as numbered steps with their commands (and the nodemedic action that does
/// a step on `node`, where there is one), then recovery, risk and verification.
pub fn remediation(r: &Remediation, node: &str, indent: &str) -> String {
    let mut out = format!("{indent}what to do ({}: {}):\n", r.rule, r.title);
    for (i, step) in r.steps.iter().enumerate() {
        out.push_str(&format!("{indent}  {}. {}\n", i + 1, step.text));
        if !step.command.is_empty() {
            let command = &step.command;
            out.push_str(&format!("{indent}     $ {command}\n"));
        }
        if !step.action.is_empty() {
            out.push_str(&format!(
                "{indent}     or let the agent do it: nodemedic remediate plan {node} {}\n",
                step.action
            ));
        }
    }
    out.push_str(&format!(
        "{indent}  recovery: {}; data loss: {}\n{indent}  verify: {}\n",
        r.recovery, r.data_loss, r.verify
    ));
    out
}
