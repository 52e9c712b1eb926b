//! Tables the way kubectl prints them: upper-case headers, columns padded with three
//! spaces, no borders, `<none>` for empty cells.

use std::time::{Duration, SystemTime};

/// A table being built.
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&'static str]) -> Self {
        Table {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; empty cells print as `<none>`, control characters escaped (cells often
    /// hold what a node said).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(
            cells
                .into_iter()
                .map(|c| {
                    if c.is_empty() {
                        "<none>".to_owned()
                    } else {
                        crate::output::one_line(&c).into_owned()
                    }
                })
                .collect(),
        );
    }

    /// Prints the table, or `empty` on stderr when no row was added (kubectl's "No
    /// resources found").
    pub fn print_or(&self, empty: &str) {
        if self.rows.is_empty() {
            eprintln!("{empty}");
        } else {
            print!("{}", self.render(""));
        }
    }

    /// The table as text, each line prefixed with `indent`; the last column is not padded.
    pub fn render(&self, indent: &str) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.len()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let headers: Vec<String> = self.headers.iter().map(|h| (*h).to_owned()).collect();
        for row in std::iter::once(&headers).chain(&self.rows) {
            let mut line = String::from(indent);
            for (i, cell) in row.iter().enumerate() {
                if i + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.push_str(&" ".repeat(widths[i] - cell.chars().count() + 3));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// kubectl's short age: `45s`, `12m`, `3h`, `5d`.
pub fn age(since: SystemTime, now: SystemTime) -> String {
    let d = now
        .duration_since(since)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    match d {
        0..120 => format!("{d}s"),
        120..7200 => format!("{}m", d / 60),
        7200..172_800 => format!("{}h", d / 3600),
        _ => format!("{}d", d / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_kubectl() {
        let mut t = Table::new(&["NAME", "STATUS", "AGE"]);
        t.row(vec!["node-1".into(), "Ready".into(), "5d".into()]);
        t.row(vec!["n2".into(), String::new(), "12m".into()]);
        assert_eq!(
            t.render(""),
            "NAME     STATUS   AGE\nnode-1   Ready    5d\nn2       <none>   12m\n"
        );
    }

    #[test]
    fn ages() {
        let t0 = SystemTime::UNIX_EPOCH;
        let at = |s| t0 + Duration::from_secs(s);
        assert_eq!(age(t0, at(45)), "45s");
        assert_eq!(age(t0, at(600)), "10m");
        assert_eq!(age(t0, at(3 * 3600)), "3h");
        assert_eq!(age(t0, at(5 * 86_400)), "5d");
        assert_eq!(age(at(10), t0), "0s");
    }
}
