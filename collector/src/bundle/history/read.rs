//! Reading a `history.json` back into reports: every column checked to add up before the
//! first report is made.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::format::{FORMAT, MAX_INDEX, MAX_REPORTS, parse_int};

/// A history file that is not one.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// Not JSON of this format.
    #[error("not a {FORMAT} history: {0}")]
    Format(String),
    /// A column that does not add up.
    #[error("column {path}: {reason}")]
    Column {
        /// The column's path, as JSON.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Doc {
    format: String,
    reports: u64,
    columns: Vec<ColumnDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ColumnDoc {
    path: Vec<PathStep>,
    #[serde(default)]
    runs: Option<Vec<Run>>,
    #[serde(default)]
    start: Option<Value>,
    #[serde(default)]
    steps: Option<Vec<Step>>,
}

#[derive(Deserialize, Serialize)]
#[serde(untagged)]
enum PathStep {
    Key(String),
    Index(usize),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Run {
    Absent((u64,)),
    Value((u64, Value)),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Step {
    One(i64),
    Repeated((u64, i64)),
}

/// One column being read back, report after report.
enum Cursor {
    Runs {
        runs: std::vec::IntoIter<Run>,
        value: Option<Value>,
        left: u64,
    },
    Steps {
        value: i128,
        quoted: bool,
        started: bool,
        steps: std::vec::IntoIter<Step>,
        step: i64,
        left: u64,
    },
}

impl Cursor {
    /// A column's cursor, once its counts add up to `reports`.
    fn new(c: ColumnDoc, reports: u64) -> Result<(Vec<PathStep>, Self), HistoryError> {
        let ColumnDoc {
            path,
            runs,
            start,
            steps,
        } = c;
        match Self::of(runs, start, steps, &path, reports) {
            Ok(cursor) => Ok((path, cursor)),
            Err(reason) => Err(HistoryError::Column {
                path: serde_json::to_string(&path).unwrap_or_default(),
                reason,
            }),
        }
    }

    fn of(
        runs: Option<Vec<Run>>,
        start: Option<Value>,
        steps: Option<Vec<Step>>,
        path: &[PathStep],
        reports: u64,
    ) -> Result<Self, String> {
        if path
            .iter()
            .any(|s| matches!(s, PathStep::Index(i) if *i > MAX_INDEX))
        {
            return Err(format!("an array index past {MAX_INDEX}"));
        }
        match (runs, start, steps) {
            (Some(runs), None, None) => {
                add_up(
                    runs.iter().map(|r| match r {
                        Run::Absent((n,)) | Run::Value((n, _)) => *n,
                    }),
                    reports,
                )?;
                Ok(Cursor::Runs {
                    runs: runs.into_iter(),
                    value: None,
                    left: 0,
                })
            }
            (None, Some(start), Some(steps)) if reports > 0 => {
                let (value, quoted) = match &start {
                    Value::String(s) => parse_int(format!("\"{s}\"").as_bytes()),
                    Value::Number(n) => parse_int(n.to_string().as_bytes()),
                    _ => None,
                }
                .ok_or("start is not an integer")?;
                add_up(
                    steps.iter().map(|s| match s {
                        Step::One(_) => 1,
                        Step::Repeated((n, _)) => *n,
                    }),
                    reports - 1,
                )?;
                Ok(Cursor::Steps {
                    value,
                    quoted,
                    started: false,
                    steps: steps.into_iter(),
                    step: 0,
                    left: 0,
                })
            }
            _ => Err("neither runs, nor start and steps for some reports".into()),
        }
    }

    /// The value in the next report (none when that report does not have the field).
    fn next_value(&mut self) -> Option<Value> {
        match self {
            Cursor::Runs { runs, value, left } => {
                while *left == 0 {
                    (*left, *value) = match runs.next()? {
                        Run::Absent((n,)) => (n, None),
                        Run::Value((n, v)) => (n, Some(v)),
                    };
                }
                *left -= 1;
                value.clone()
            }
            Cursor::Steps {
                value,
                quoted,
                started,
                steps,
                step,
                left,
            } => {
                if std::mem::replace(started, true) {
                    while *left == 0 {
                        (*left, *step) = match steps.next()? {
                            Step::One(s) => (1, s),
                            Step::Repeated((n, s)) => (n, s),
                        };
                    }
                    *left -= 1;
                    *value = value.saturating_add(i128::from(*step));
                }
                Some(if *quoted {
                    Value::String(value.to_string())
                } else {
                    serde_json::Number::from_i128(*value)
                        .map_or_else(|| Value::String(value.to_string()), Value::Number)
                })
            }
        }
    }
}

/// Counts that are all positive and add up to `want`.
fn add_up(counts: impl Iterator<Item = u64>, want: u64) -> Result<(), String> {
    let mut sum = 0u64;
    for n in counts {
        if n == 0 {
            return Err("a count of 0".to_owned());
        }
        sum = sum.saturating_add(n);
    }
    if sum == want {
        Ok(())
    } else {
        Err(format!("{sum} values for {want} reports"))
    }
}

/// The reports of a history file, one JSON object each, read back column by column.
pub struct Rows {
    left: u64,
    columns: Vec<(Vec<PathStep>, Cursor)>,
}

/// Reads a history file; every column is checked to add up before the first report.
pub fn rows(text: &[u8]) -> Result<Rows, HistoryError> {
    let doc: Doc = serde_json::from_slice(text).map_err(|e| HistoryError::Format(e.to_string()))?;
    if doc.format != FORMAT {
        return Err(HistoryError::Format(format!("format {:?}", doc.format)));
    }
    if doc.reports > MAX_REPORTS {
        return Err(HistoryError::Format(format!(
            "{} reports claimed, at most {MAX_REPORTS} read",
            doc.reports
        )));
    }
    let columns = doc
        .columns
        .into_iter()
        .map(|c| Cursor::new(c, doc.reports))
        .collect::<Result<_, _>>()?;
    Ok(Rows {
        left: doc.reports,
        columns,
    })
}

impl Iterator for Rows {
    type Item = Value;

    fn next(&mut self) -> Option<Value> {
        self.left = self.left.checked_sub(1)?;
        let mut report = Value::Object(Map::new());
        for (path, cursor) in &mut self.columns {
            if let Some(value) = cursor.next_value() {
                set(&mut report, path, value);
            }
        }
        Some(report)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        // At most MAX_REPORTS: fits.
        let left = self.left as usize;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Rows {}

/// Puts `value` at `path` in `root`, making the objects and arrays on the way.
fn set(root: &mut Value, path: &[PathStep], value: Value) {
    let mut at = root;
    for step in path {
        at = match step {
            PathStep::Key(key) => {
                if !at.is_object() {
                    *at = Value::Object(Map::new());
                }
                let Value::Object(map) = at else {
                    unreachable!("made an object above")
                };
                map.entry(key.as_str()).or_insert(Value::Null)
            }
            PathStep::Index(i) => {
                if !at.is_array() {
                    *at = Value::Array(Vec::new());
                }
                let Value::Array(items) = at else {
                    unreachable!("made an array above")
                };
                if items.len() <= *i {
                    items.resize(i + 1, Value::Null);
                }
                &mut items[*i]
            }
        };
    }
    *at = value;
}
