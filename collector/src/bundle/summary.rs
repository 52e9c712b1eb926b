//! `summary.html`: one self-contained page (no scripts, no external assets) with the
//! incidents and their remediations, a node table, and two charts over the bundle's window
//! drawn as inline SVG: the fullest filesystem and the least available memory across the
//! nodes. Built from what the bundle writes anyway, in one pass, in memory bounded by the
//! node table.

use std::fmt::Write as _;

use nodemedic_proto::{
    time::{system_time, timestamp_millis},
    v1::{Incident, NodeReport},
};

/// Time buckets of the charts.
const BUCKETS: usize = 120;

/// What the page is made from, gathered while the bundle is written.
pub struct Summary {
    start: i64,
    end: i64,
    /// Per bucket: the highest disk use (%) and the lowest memory available (%) seen.
    disk: Vec<Option<f64>>,
    memory: Vec<Option<f64>>,
    nodes: Vec<NodeLine>,
}

struct NodeLine {
    name: String,
    last_report: Option<i64>,
    disk_used: Option<f64>,
    memory_available: Option<f64>,
    findings: usize,
}

fn disk_used(r: &NodeReport) -> Option<f64> {
    r.disk
        .as_ref()?
        .mounts
        .iter()
        .filter_map(|m| m.used_percent())
        .reduce(f64::max)
}

fn memory_available(r: &NodeReport) -> Option<f64> {
    let m = r.memory.as_ref()?;
    (m.total_bytes > 0).then(|| m.available_bytes as f64 * 100.0 / m.total_bytes as f64)
}

/// Keeps in `slot` the value `pick` prefers of it and `value`.
fn keep(slot: &mut Option<f64>, value: f64, pick: fn(f64, f64) -> f64) {
    *slot = Some(slot.map_or(value, |x| pick(x, value)));
}

impl Summary {
    /// An empty summary of the window `start..=end` (unix ms).
    pub fn new((start, end): (i64, i64)) -> Self {
        Summary {
            start,
            end: end.max(start + 1),
            disk: vec![None; BUCKETS],
            memory: vec![None; BUCKETS],
            nodes: Vec::new(),
        }
    }

    fn bucket(&self, at: i64) -> Option<usize> {
        (at >= self.start && at <= self.end).then(|| {
            (((at - self.start) as f64 / (self.end - self.start) as f64) * (BUCKETS - 1) as f64)
                .round() as usize
        })
    }

    /// A report of the window.
    pub fn report(&mut self, r: &NodeReport) {
        let Some(b) = r
            .collected_at
            .as_ref()
            .map(timestamp_millis)
            .and_then(|t| self.bucket(t))
        else {
            return;
        };
        if let Some(d) = disk_used(r) {
            keep(&mut self.disk[b], d, f64::max);
        }
        if let Some(m) = memory_available(r) {
            keep(&mut self.memory[b], m, f64::min);
        }
    }

    /// Adds what `part` (of the same window: one node's, gathered on another thread) holds.
    pub fn merge(&mut self, part: Summary) {
        for (mine, theirs) in self.disk.iter_mut().zip(part.disk) {
            if let Some(d) = theirs {
                keep(mine, d, f64::max);
            }
        }
        for (mine, theirs) in self.memory.iter_mut().zip(part.memory) {
            if let Some(m) = theirs {
                keep(mine, m, f64::min);
            }
        }
        self.nodes.extend(part.nodes);
    }

    /// A node's row, from its latest report.
    pub fn node(&mut self, name: &str, latest: Option<&NodeReport>) {
        self.nodes.push(NodeLine {
            name: name.to_owned(),
            last_report: latest
                .and_then(|r| r.collected_at.as_ref())
                .map(timestamp_millis),
            disk_used: latest.and_then(disk_used),
            memory_available: latest.and_then(memory_available),
            findings: latest.map_or(0, |r| r.findings.len()),
        });
    }

    /// The page.
    pub fn html(&self, incidents: &[Incident], created: &str) -> String {
        let mut out = String::with_capacity(16 * 1024 + self.nodes.len() * 200);
        let _ = write!(
            out,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>nodemedic bundle {created}</title>\
<style>body{{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse}}\
td,th{{border-bottom:1px solid #ddd;padding:3px 10px;text-align:left}}.critical{{color:#b00}}.warning{{color:#a60}}\
code{{background:#f4f4f4;padding:1px 4px}}section{{margin-bottom:2em}}svg{{background:#fafafa;border:1px solid #ddd}}</style>\
</head><body>\n<h1>nodemedic diagnostics bundle</h1><p>Created {created}; {} incidents, {} nodes.</p>\n",
            incidents.len(),
            self.nodes.len()
        );
        out.push_str("<section><h2>Incidents</h2>\n");
        if incidents.is_empty() {
            out.push_str("<p>No incidents in this bundle.</p>\n");
        }
        for i in incidents {
            let severity = i.severity().label();
            let _ = writeln!(
                out,
                "<article><h3 class=\"{severity}\">#{} {} <small>({severity}, {}, {})</small></h3><p>{}</p><p>Nodes: {}</p>",
                i.id,
                esc(&i.title),
                format!("{:?}", i.scope()).to_lowercase(),
                format!("{:?}", i.state()).to_lowercase(),
                esc(&i.summary),
                esc(&i.nodes.join(", "))
            );
            if let Some(r) = &i.remediation {
                out.push_str("<ol>");
                for s in &r.steps {
                    let _ = write!(out, "<li>{}", esc(&s.text));
                    if !s.command.is_empty() {
                        let _ = write!(out, "<br><code>{}</code>", esc(&s.command));
                    }
                    out.push_str("</li>");
                }
                let _ = writeln!(
                    out,
                    "</ol><p>Recovery: {}. Data loss: {}. Verify: {}.</p>",
                    esc(&r.recovery),
                    esc(&r.data_loss),
                    esc(&r.verify)
                );
            }
            out.push_str("</article>\n");
        }
        out.push_str("</section>\n<section><h2>Over the window</h2>\n");
        out.push_str(&chart(
            "Fullest filesystem across nodes (% used)",
            &self.disk,
            "#c0392b",
        ));
        out.push_str(&chart(
            "Least memory available across nodes (%)",
            &self.memory,
            "#2471a3",
        ));
        out.push_str("</section>\n<section><h2>Nodes</h2><table><tr><th>Node</th><th>Last report</th><th>Fullest filesystem</th><th>Memory available</th><th>Findings</th></tr>\n");
        let pct = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.0}%"));
        for n in &self.nodes {
            let last = n.last_report.map_or("-".to_owned(), |t| {
                humantime::format_rfc3339_seconds(system_time(
                    &nodemedic_proto::time::timestamp_from_millis(t),
                ))
                .to_string()
            });
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{last}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&n.name),
                pct(n.disk_used),
                pct(n.memory_available),
                n.findings
            );
        }
        out.push_str("</table></section>\n</body></html>\n");
        out
    }
}

/// A line chart of 0..100 values as inline SVG; gaps where a bucket has no value.
fn chart(title: &str, values: &[Option<f64>], color: &str) -> String {
    let (w, h, pad) = (720.0, 180.0, 30.0);
    let x = |i: usize| pad + i as f64 * (w - 2.0 * pad) / (values.len().max(2) - 1) as f64;
    let y = |v: f64| h - pad - v.clamp(0.0, 100.0) * (h - 2.0 * pad) / 100.0;
    let mut svg = format!(
        "<figure><figcaption>{}</figcaption><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"{}\">",
        esc(title),
        esc(title)
    );
    for level in [0.0, 25.0, 50.0, 75.0, 100.0] {
        let _ = write!(
            svg,
            "<line x1=\"{pad}\" x2=\"{}\" y1=\"{y0:.1}\" y2=\"{y0:.1}\" stroke=\"#ddd\"/><text x=\"2\" y=\"{label:.1}\" font-size=\"10\">{level}</text>",
            w - pad,
            y0 = y(level),
            label = y(level) + 3.0
        );
    }
    let mut segment: Vec<String> = Vec::new();
    let flush = |segment: &mut Vec<String>, svg: &mut String| {
        if !segment.is_empty() {
            let _ = write!(
                svg,
                "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>",
                segment.join(" ")
            );
            segment.clear();
        }
    };
    for (i, v) in values.iter().enumerate() {
        match v {
            Some(v) => segment.push(format!("{:.1},{:.1}", x(i), y(*v))),
            None => flush(&mut segment, &mut svg),
        }
    }
    flush(&mut segment, &mut svg);
    svg.push_str("</svg></figure>\n");
    svg
}

/// Text made safe for HTML.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_gaps_split_the_line() {
        assert_eq!(esc("<script>&\"'"), "&lt;script&gt;&amp;&quot;&#39;");
        let svg = chart("t", &[Some(10.0), Some(20.0), None, Some(30.0)], "#000");
        assert_eq!(svg.matches("<polyline").count(), 2);
    }
}
