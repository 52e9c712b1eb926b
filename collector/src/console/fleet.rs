//! The fleet page's model: every node as a row (worst severity, open findings, connected
//! or not, last report), filtered, sorted and cut into pages. Pure: the handler gives it
//! the store's node rows and the registry's answer; the benchmark gives it 10,000.

use nodemedic_proto::v1::Severity;
use serde::Deserialize;

use crate::store::NodeRow;

/// Rows a page shows.
pub const PAGE_SIZE: usize = 100;

/// One node as the fleet page shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct FleetRow {
    /// Node name.
    pub name: String,
    /// Its worst open finding's severity (`Unspecified`: none open).
    pub worst: Severity,
    /// Open findings: critical, warning, info.
    pub open: [u32; 3],
    /// Whether its agent has a stream open now.
    pub connected: bool,
    /// Its last report, unix ms.
    pub last_report: Option<i64>,
    /// The agent's version.
    pub agent_version: String,
}

impl FleetRow {
    /// A store row, with whether the node is connected.
    pub fn new(row: NodeRow, connected: bool) -> Self {
        FleetRow {
            worst: row.worst(),
            open: row.open,
            connected,
            last_report: row.last_report,
            agent_version: row.agent_version,
            name: row.name,
        }
    }
}

/// Which nodes by their connection.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Connection {
    /// Every node.
    #[default]
    All,
    /// Nodes whose agent has a stream open.
    Connected,
    /// Nodes whose agent has none.
    Silent,
}

/// The order of the rows.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Sort {
    /// Worst first, then most critical findings, then by name.
    #[default]
    Severity,
    /// By name.
    Name,
    /// Longest without a report first.
    LastReport,
}

/// The fleet page's query string: `?q=web&severity=warning&state=silent&sort=name&page=2`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct FleetQuery {
    /// Part of the node's name.
    pub q: String,
    /// Only nodes with an open finding at least this severe (`critical`, `warning`,
    /// `info`); empty: every node.
    pub severity: String,
    /// By connection.
    pub state: Connection,
    /// The order.
    pub sort: Sort,
    /// 1-based; past the last page shows the last.
    pub page: Option<usize>,
}

impl FleetQuery {
    /// The least severity asked for, or why the word is not one.
    pub fn min_severity(&self) -> Result<Option<Severity>, String> {
        match self.severity.as_str() {
            "" | "any" => Ok(None),
            s => Severity::from_label(s)
                .map(Some)
                .ok_or_else(|| format!("severity={s:?}: expected critical, warning, info or any")),
        }
    }

    /// This query's string with `page` instead of its own (for the pager's links and the
    /// live region's refresh).
    pub fn with_page(&self, page: usize) -> String {
        let mut pairs =
            form_urlencoded(&[("q", self.q.as_str()), ("severity", self.severity.as_str())]);
        if self.state != Connection::All {
            pairs.push_str(match self.state {
                Connection::Connected => "&state=connected",
                _ => "&state=silent",
            });
        }
        pairs.push_str(match self.sort {
            Sort::Severity => "",
            Sort::Name => "&sort=name",
            Sort::LastReport => "&sort=last_report",
        });
        format!("page={page}{pairs}")
    }
}

/// `&key=value` pairs of the non-empty values, percent-encoded.
fn form_urlencoded(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (key, value) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
        out.push('&');
        out.push_str(key);
        out.push('=');
        for b in value.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    out.push(b as char)
                }
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
    }
    out
}

/// One page of the fleet, and what the whole fleet holds.
#[derive(Debug)]
pub struct FleetPage {
    /// The rows of this page.
    pub rows: Vec<FleetRow>,
    /// Nodes in the fleet.
    pub total: usize,
    /// Nodes the filter kept.
    pub matched: usize,
    /// This page, 1-based.
    pub page: usize,
    /// Pages the matched nodes fill (at least 1).
    pub pages: usize,
    /// Nodes of the whole fleet by worst severity: critical, warning, info, none.
    pub by_worst: [usize; 4],
    /// Nodes of the whole fleet without a stream.
    pub silent: usize,
}

/// The page `query` asks for of `rows` (every node).
pub fn page(rows: Vec<FleetRow>, query: &FleetQuery, min: Option<Severity>) -> FleetPage {
    let total = rows.len();
    let mut by_worst = [0; 4];
    let mut silent = 0;
    for r in &rows {
        by_worst[match r.worst {
            Severity::Critical => 0,
            Severity::Warning => 1,
            Severity::Info => 2,
            Severity::Unspecified => 3,
        }] += 1;
        silent += usize::from(!r.connected);
    }
    let needle = query.q.to_lowercase();
    let mut kept: Vec<FleetRow> = rows
        .into_iter()
        .filter(|r| needle.is_empty() || r.name.contains(&needle))
        .filter(|r| min.is_none_or(|m| r.worst != Severity::Unspecified && r.worst >= m))
        .filter(|r| match query.state {
            Connection::All => true,
            Connection::Connected => r.connected,
            Connection::Silent => !r.connected,
        })
        .collect();
    let matched = kept.len();
    let pages = matched.div_ceil(PAGE_SIZE).max(1);
    let page = query.page.unwrap_or(1).clamp(1, pages);
    let by_name = |a: &FleetRow, b: &FleetRow| a.name.cmp(&b.name);
    let key = |r: &FleetRow| (std::cmp::Reverse(r.worst), std::cmp::Reverse(r.open[0]));
    let cut = |kept: &mut Vec<FleetRow>,
               order: &dyn Fn(&FleetRow, &FleetRow) -> std::cmp::Ordering| {
        // Only the rows up to this page's end need their final order.
        let end = (page * PAGE_SIZE).min(kept.len());
        if end < kept.len() && end > 0 {
            kept.select_nth_unstable_by(end - 1, |a, b| order(a, b));
            kept.truncate(end);
        }
        kept.sort_unstable_by(|a, b| order(a, b));
    };
    match query.sort {
        Sort::Severity => cut(&mut kept, &|a, b| {
            key(a).cmp(&key(b)).then_with(|| by_name(a, b))
        }),
        Sort::Name => cut(&mut kept, &by_name),
        Sort::LastReport => cut(&mut kept, &|a, b| {
            a.last_report
                .cmp(&b.last_report)
                .then_with(|| by_name(a, b))
        }),
    }
    let rows = kept.into_iter().skip((page - 1) * PAGE_SIZE).collect();
    FleetPage {
        rows,
        total,
        matched,
        page,
        pages,
        by_worst,
        silent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::worst_of as worst;

    fn row(name: &str, open: [u32; 3], connected: bool, last: i64) -> FleetRow {
        FleetRow {
            name: name.into(),
            worst: worst(open),
            open,
            connected,
            last_report: Some(last),
            agent_version: "0.1.0".into(),
        }
    }

    fn fleet(n: usize) -> Vec<FleetRow> {
        (0..n)
            .map(|i| {
                let open = match i % 10 {
                    0 => [1, 0, 0],
                    1 | 2 => [0, 2, 0],
                    3 => [0, 0, 1],
                    _ => [0, 0, 0],
                };
                row(&format!("node-{i:05}"), open, i % 7 != 0, 1_000 + i as i64)
            })
            .collect()
    }

    #[test]
    fn worst_first_then_by_name_and_pages_cut_the_sorted_whole() {
        let all = page(fleet(1000), &FleetQuery::default(), None);
        assert_eq!((all.total, all.matched, all.pages), (1000, 1000, 10));
        assert_eq!(all.by_worst, [100, 200, 100, 600]);
        assert_eq!(all.silent, 143);
        assert_eq!(all.rows.len(), PAGE_SIZE);
        assert!(all.rows.iter().all(|r| r.worst == Severity::Critical));
        assert_eq!(all.rows[0].name, "node-00000");
        assert_eq!(all.rows[99].name, "node-00990");
        // Page 2 starts where page 1 ended, in the same order as sorting everything.
        let second = page(
            fleet(1000),
            &FleetQuery {
                page: Some(2),
                ..Default::default()
            },
            None,
        );
        assert_eq!(second.rows[0].name, "node-00001");
        assert_eq!(second.rows[0].worst, Severity::Warning);
        let mut whole = fleet(1000);
        whole.sort_by(|a, b| {
            (std::cmp::Reverse(a.worst), &a.name).cmp(&(std::cmp::Reverse(b.worst), &b.name))
        });
        let last = page(
            fleet(1000),
            &FleetQuery {
                page: Some(99),
                ..Default::default()
            },
            None,
        );
        assert_eq!(last.page, 10, "past the end shows the last page");
        assert_eq!(last.rows, whole[900..].to_vec());
    }

    #[test]
    fn filters_combine() {
        let q = FleetQuery {
            q: "node-001".into(),
            severity: "warning".into(),
            state: Connection::Connected,
            sort: Sort::Name,
            page: None,
        };
        let min = q.min_severity().unwrap();
        let p = page(fleet(1000), &q, min);
        let names: Vec<_> = p.rows.iter().map(|r| r.name.as_str()).collect();
        // node-00100..00199 whose worst is warning or critical and that are connected.
        assert!(names.iter().all(|n| n.starts_with("node-001")));
        assert!(
            p.rows
                .iter()
                .all(|r| r.connected && r.worst >= Severity::Warning)
        );
        assert_eq!(p.matched, 26);
        assert!(names.windows(2).all(|w| w[0] < w[1]));
        assert!(
            FleetQuery {
                severity: "bad".into(),
                ..Default::default()
            }
            .min_severity()
            .is_err()
        );
        let silent = page(
            fleet(1000),
            &FleetQuery {
                state: Connection::Silent,
                sort: Sort::LastReport,
                ..Default::default()
            },
            None,
        );
        assert_eq!(silent.matched, 143);
        assert_eq!(
            silent.rows[0].name, "node-00000",
            "longest without a report first"
        );
    }

    #[test]
    fn the_query_string_round_trips_with_another_page() {
        let q = FleetQuery {
            q: "a b&c".into(),
            severity: "critical".into(),
            state: Connection::Silent,
            sort: Sort::LastReport,
            page: Some(3),
        };
        let s = q.with_page(4);
        assert_eq!(
            s,
            "page=4&q=a%20b%26c&severity=critical&state=silent&sort=last_report"
        );
        let back: FleetQuery = serde_urlencoded_like(&s);
        assert_eq!(back, FleetQuery { page: Some(4), ..q });
    }

    fn serde_urlencoded_like(s: &str) -> FleetQuery {
        let uri: axum::http::Uri = format!("/?{s}").parse().unwrap();
        axum::extract::Query::<FleetQuery>::try_from_uri(&uri)
            .unwrap()
            .0
    }
}
