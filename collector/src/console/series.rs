//! A node's history as the node page plots it: one pass over its stored reports
//! (`Reader::each_report`, one report in memory at a time), each measurement a series of
//! (time, value) points folded into at most [`BUCKETS`] buckets of the window, keeping the
//! worst value of a bucket (the fullest disk, the least memory), so a spike between two
//! pixels is not lost.

use std::collections::BTreeMap;

use nodemedic_proto::{time::timestamp_millis, v1::NodeReport};

/// Points a series keeps at most.
pub const BUCKETS: i64 = 360;
/// Series a chart draws at most (the ones with the highest latest value).
pub const MAX_LINES: usize = 5;
/// Series one measurement gathers at most (a node with many mounts or pods).
const MAX_SERIES: usize = 64;

/// Which value of a bucket is kept.
#[derive(Clone, Copy, Debug)]
enum Keep {
    Max,
    Min,
}

/// One line: its label and points (unix ms, value), oldest first.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Series {
    /// What it is (a mount point, a pod, a nameserver).
    pub label: String,
    /// (unix ms, value), at most one a bucket.
    pub points: Vec<(i64, f64)>,
}

impl Series {
    fn add(&mut self, t: i64, value: f64, keep: Keep) {
        match self.points.last_mut() {
            Some((last, v)) if *last == t => {
                *v = match keep {
                    Keep::Max => v.max(value),
                    Keep::Min => v.min(value),
                }
            }
            _ => self.points.push((t, value)),
        }
    }

    /// Its latest value.
    pub fn last(&self) -> Option<f64> {
        self.points.last().map(|p| p.1)
    }
}

/// Series by label, gathered in the order they first appear.
#[derive(Debug, Default)]
struct Lines {
    by_label: BTreeMap<String, Series>,
}

impl Lines {
    fn add(&mut self, w: &Window, label: &str, at: i64, value: f64, keep: Keep) {
        if !value.is_finite() {
            return;
        }
        let Some(bucket) = w.bucket(at) else { return };
        let t = w.start + bucket * w.width;
        // A known line (every point but a line's first) is found without allocating.
        if let Some(line) = self.by_label.get_mut(label) {
            line.add(t, value, keep);
        } else if self.by_label.len() < MAX_SERIES {
            let mut line = Series {
                label: label.to_owned(),
                points: Vec::new(),
            };
            line.add(t, value, keep);
            self.by_label.insert(label.to_owned(), line);
        }
    }

    /// The [`MAX_LINES`] series with the highest latest value.
    fn top(self) -> Vec<Series> {
        let mut all: Vec<Series> = self.by_label.into_values().collect();
        all.sort_by(|a, b| b.last().unwrap_or(0.0).total_cmp(&a.last().unwrap_or(0.0)));
        all.truncate(MAX_LINES);
        all
    }
}

/// The window plotted, cut into buckets.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    /// Its start, unix ms.
    pub start: i64,
    /// Its end, unix ms.
    pub end: i64,
    width: i64,
}

impl Window {
    /// `start..=end`, unix ms.
    pub fn new(start: i64, end: i64) -> Self {
        let end = end.max(start + BUCKETS);
        Window {
            start,
            end,
            width: (end - start) / BUCKETS,
        }
    }

    fn bucket(&self, at: i64) -> Option<i64> {
        (at >= self.start && at <= self.end)
            .then(|| ((at - self.start) / self.width).min(BUCKETS - 1))
    }
}

/// A mount's forecast: when, at its latest fill rate, it is full.
#[derive(Clone, Debug, PartialEq)]
pub struct Forecast {
    /// The mount point.
    pub label: String,
    /// From (unix ms, % used) …
    pub from: (i64, f64),
    /// … to full at this time (unix ms).
    pub full_at: i64,
}

/// What the node page plots.
#[derive(Debug, Default)]
pub struct History {
    /// % used of the fullest filesystems.
    pub disk: Vec<Series>,
    /// Where the fullest of them are headed, when they fill.
    pub forecasts: Vec<Forecast>,
    /// Memory available (%), and memory PSI `some` over 10 s (%).
    pub memory: Vec<Series>,
    /// Working set of the pods' containers closest to their limits, % of the limit.
    pub pods: Vec<Series>,
    /// DNS latency (p95, ms) per nameserver.
    pub dns: Vec<Series>,
    /// Reports read.
    pub reports: usize,
}

/// Gathers a node's [`History`] over `window`, a report at a time.
#[derive(Debug)]
pub struct Gatherer {
    window: Window,
    disk: Lines,
    memory: Lines,
    pods: Lines,
    dns: Lines,
    forecasts: Vec<Forecast>,
    reports: usize,
}

impl Gatherer {
    /// An empty history of `window`.
    pub fn new(window: Window) -> Self {
        Gatherer {
            window,
            disk: Lines::default(),
            memory: Lines::default(),
            pods: Lines::default(),
            dns: Lines::default(),
            forecasts: Vec::new(),
            reports: 0,
        }
    }

    /// One report, oldest first.
    pub fn report(&mut self, r: &NodeReport) {
        let Some(at) = r.collected_at.as_ref().map(timestamp_millis) else {
            return;
        };
        let w = self.window;
        self.reports += 1;
        self.forecasts.clear();
        if let Some(disk) = &r.disk {
            for m in &disk.mounts {
                let Some(used) = m.used_percent() else {
                    continue;
                };
                self.disk.add(&w, &m.mount_point, at, used, Keep::Max);
                if let Some(hours) = m.full_in_hours.filter(|h| h.is_finite() && *h >= 0.0) {
                    self.forecasts.push(Forecast {
                        label: m.mount_point.clone(),
                        from: (at, used),
                        full_at: at.saturating_add((hours * 3_600_000.0) as i64),
                    });
                }
            }
        }
        if let Some(m) = r.memory.as_ref().filter(|m| m.total_bytes > 0) {
            let available = m.available_bytes as f64 * 100.0 / m.total_bytes as f64;
            self.memory.add(&w, "available %", at, available, Keep::Min);
            if let Some(p) = &m.pressure {
                self.memory
                    .add(&w, "PSI some avg10 %", at, p.some_avg10, Keep::Max);
            }
        }
        if let Some(c) = &r.cgroups {
            for u in c.top.iter().filter(|u| u.limit_bytes > 0) {
                let label = match u.container.as_str() {
                    "" => format!("{}/{}", u.namespace, u.pod),
                    c => format!("{}/{}/{c}", u.namespace, u.pod),
                };
                let pct = u.working_set_bytes as f64 * 100.0 / u.limit_bytes as f64;
                self.pods.add(&w, &label, at, pct, Keep::Max);
            }
        }
        if let Some(d) = &r.dns {
            for p in d.probes.iter().filter(|p| p.answered > 0) {
                let label = format!("{} {}", p.nameserver, p.protocol);
                self.dns.add(&w, &label, at, p.p95_ms, Keep::Max);
            }
        }
    }

    /// The history: the top lines of each chart; forecasts of the latest report for the
    /// mounts drawn.
    pub fn finish(self) -> History {
        let disk = self.disk.top();
        let forecasts = self
            .forecasts
            .into_iter()
            .filter(|f| disk.iter().any(|s| s.label == f.label))
            .collect();
        let mut memory: Vec<Series> = self.memory.by_label.into_values().collect();
        memory.sort_by(|a, b| a.label.cmp(&b.label));
        History {
            disk,
            forecasts,
            memory,
            pods: self.pods.top(),
            dns: self.dns.top(),
            reports: self.reports,
        }
    }
}

#[cfg(test)]
mod tests {
    use nodemedic_proto::{
        time::timestamp_from_millis,
        v1::{DiskSection, MemorySection, Mount},
    };

    use super::*;

    fn report(at: i64, avail: u64, mem_avail: u64) -> NodeReport {
        NodeReport {
            collected_at: Some(timestamp_from_millis(at)),
            disk: Some(DiskSection {
                mounts: vec![Mount {
                    mount_point: "/var/lib/kubelet".into(),
                    bytes_total: 100,
                    bytes_available: avail,
                    full_in_hours: Some(2.0),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            memory: Some(MemorySection {
                total_bytes: 100,
                available_bytes: mem_avail,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_bucket_keeps_its_worst_value_and_the_latest_forecast() {
        let w = Window::new(0, 3_600_000);
        let mut g = Gatherer::new(w);
        // Two reports in one 10 s bucket: the fuller disk and the lower memory win.
        g.report(&report(1_000, 60, 50));
        g.report(&report(2_000, 40, 70));
        g.report(&report(1_800_000, 10, 60));
        g.report(&report(9_000_000, 0, 0)); // outside the window: not plotted
        let h = g.finish();
        assert_eq!(h.reports, 4);
        assert_eq!(h.disk.len(), 1);
        assert_eq!(h.disk[0].points, vec![(0, 60.0), (1_800_000, 90.0)]);
        let available = h.memory.iter().find(|s| s.label == "available %").unwrap();
        assert_eq!(available.points, vec![(0, 50.0), (1_800_000, 60.0)]);
        assert_eq!(
            h.forecasts,
            vec![Forecast {
                label: "/var/lib/kubelet".into(),
                from: (9_000_000, 100.0),
                full_at: 9_000_000 + 7_200_000
            }]
        );
    }

    #[test]
    fn pods_against_their_limits_and_dns_latency_per_server() {
        use nodemedic_proto::v1::{CgroupsSection, DnsProbeStats, DnsSection, PodUsage};
        let mut g = Gatherer::new(Window::new(0, 3_600_000));
        let usage = |container: &str, ws: u64, limit: u64| PodUsage {
            namespace: "shop".into(),
            pod: "cart-1".into(),
            container: container.into(),
            working_set_bytes: ws,
            limit_bytes: limit,
            ..Default::default()
        };
        g.report(&NodeReport {
            collected_at: Some(timestamp_from_millis(60_000)),
            cgroups: Some(CgroupsSection {
                top: vec![usage("app", 90, 100), usage("", 10, 0)],
                ..Default::default()
            }),
            dns: Some(DnsSection {
                probes: vec![
                    DnsProbeStats {
                        nameserver: "10.96.0.10".into(),
                        protocol: "udp".into(),
                        answered: 5,
                        p95_ms: 12.5,
                        ..Default::default()
                    },
                    // Nothing answered: no latency to plot.
                    DnsProbeStats {
                        nameserver: "10.96.0.11".into(),
                        protocol: "udp".into(),
                        p95_ms: 0.0,
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }),
            ..Default::default()
        });
        let h = g.finish();
        assert_eq!(h.pods.len(), 1, "a pod without a limit has no share of it");
        assert_eq!(h.pods[0].label, "shop/cart-1/app");
        assert_eq!(h.pods[0].last(), Some(90.0));
        assert_eq!(h.dns.len(), 1);
        assert_eq!(h.dns[0].label, "10.96.0.10 udp");
        assert_eq!(h.dns[0].last(), Some(12.5));
    }

    #[test]
    fn only_the_fullest_lines_are_drawn() {
        let mut lines = Lines::default();
        let w = Window::new(0, 1000);
        for i in 0..(MAX_SERIES + 10) {
            lines.add(&w, &format!("m{i:03}"), 5, i as f64, Keep::Max);
        }
        assert_eq!(lines.by_label.len(), MAX_SERIES);
        let top = lines.top();
        assert_eq!(top.len(), MAX_LINES);
        assert_eq!(top[0].label, format!("m{:03}", MAX_SERIES - 1));
    }
}
