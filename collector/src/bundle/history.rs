//! A node's reports in a bundle, column by column: `nodes/<node>/history.json`.
//!
//! Reports that follow each other differ in a few numbers. Written one JSON document a line,
//! every changed number costs the compressor again, with the key around it: ~80 bytes a
//! report after zstd. Column by column (every value of one field over the window, in
//! order; integers as their differences) the same reports take about half (BENCHMARKS.md).
//! Nothing is lost: [`rows`] gives every report back as the JSON it was
//! (`nodemedic bundle history FILE` prints them a line each).
//!
//! ```json
//! {"format":"nodemedic.history.v1","reports":360,"columns":[
//! {"path":["seq"],"start":"1","steps":[[359,1]]},
//! {"path":["memory","availableBytes"],"start":"24602082407","steps":[-26398245,41872,[3,0]]},
//! {"path":["memory","topProcesses",4,"name"],"runs":[[200,"bash"],[10],[150,"sleep"]]}
//! ]}
//! ```
//! - `path`: where the value sits in a report: keys and array indices, as jq's `getpath`.
//! - `runs`: the values, report after report, as `[count, value]`; `[count]` for reports
//!   without this field.
//! - `start` and `steps`, for a field every report has as an integer (a JSON number, or a
//!   string holding one, as proto3 JSON writes 64-bit integers): the first value, then each
//!   next one as its difference from the one before; `[count, step]` for a step repeated.
//!
//! Redaction happens here, value by value, with the same patterns as every other file: a
//! string is checked together with its key (`"key":"value"`), once per run of equal values.
//! An integer is never a credential unless its key says so; such a column is checked whole.

use std::{
    borrow::Cow,
    collections::HashMap,
    io::{self, Write},
};

use serde::{Deserialize, Serialize};
use serde_json::{
    Map, Value,
    ser::{CharEscape, CompactFormatter, Formatter},
};

use super::redact::Redactor;

/// The `format` this module writes and reads.
pub const FORMAT: &str = "nodemedic.history.v1";
/// Most reports one file may claim (a week at one a second).
const MAX_REPORTS: u64 = 7 * 86_400;
/// Columns kept from one node for the next: beyond, the next starts with none.
const MAX_KEPT_COLUMNS: usize = 4096;
/// Largest array index a path may hold.
const MAX_INDEX: usize = 1 << 16;

/// One value of a column, in one report.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Cell {
    /// The report does not have this field.
    Absent,
    /// An integer; `quoted` when written as a string (proto3 JSON's 64-bit integers).
    Int { value: i128, quoted: bool },
    /// Any other JSON value, as text in the column's `text` (redacted).
    Text { start: u32, end: u32 },
}

/// Every value of one field, report after report.
struct Column {
    /// The path's elements as JSON text, comma separated: `"memory","topProcesses",4`.
    path: Vec<u8>,
    /// Its last key, as JSON text (none when the value sits in an array).
    key: Option<Vec<u8>>,
    /// The key says the value is a credential: integers are checked too.
    secret_key: bool,
    cells: Vec<Cell>,
    text: Vec<u8>,
    /// The last text value as it came, and its cell and redactions (none before the first):
    /// a run of one value is checked once.
    last_raw: Vec<u8>,
    last_text: Option<(Cell, u64)>,
    /// The column whose value came after this one's last time.
    next: Option<usize>,
}

/// Where the walk through a report is: one frame per open object or array.
struct Frame {
    /// The path's length at this container.
    path_len: usize,
    array: bool,
    /// The next array index.
    index: usize,
    empty: bool,
}

/// A node's history being built: [`History::add`] each report, then [`History::take`] the file.
pub struct History<'r> {
    redactor: Option<&'r Redactor>,
    reports: usize,
    columns: Vec<Column>,
    by_path: HashMap<Vec<u8>, usize>,
    /// The columns in the order they are written: each new one after the field it followed.
    order: Vec<usize>,
    /// The column of the first value of the last report, and of the last value of this one:
    /// reports nearly always have the same fields in the same order, so a path is compared
    /// with the column that came next last time (`Column::next`) before it is looked up.
    first: Option<usize>,
    last: Option<usize>,
    redacted: u64,
    /// The size of the last file written: the next node's is much the same.
    size_hint: usize,
    path: Vec<u8>,
    frames: Vec<Frame>,
    token: Vec<u8>,
    in_key: bool,
}

impl<'r> History<'r> {
    /// A history with credentials redacted by `redactor` (kept when none).
    pub fn new(redactor: Option<&'r Redactor>) -> Self {
        History {
            redactor,
            reports: 0,
            columns: Vec::new(),
            by_path: HashMap::new(),
            order: Vec::new(),
            first: None,
            last: None,
            redacted: 0,
            size_hint: 0,
            path: Vec::new(),
            frames: Vec::new(),
            token: Vec::new(),
            in_key: false,
        }
    }

    /// Adds the next report (anything that serializes to a JSON object).
    pub fn add(&mut self, report: &impl Serialize) -> Result<(), serde_json::Error> {
        self.path.clear();
        self.frames.clear();
        self.token.clear();
        self.in_key = false;
        self.last = None;
        report.serialize(&mut serde_json::Serializer::with_formatter(
            io::sink(),
            Leaves(self),
        ))?;
        self.reports += 1;
        Ok(())
    }

    /// The file of the reports added (none if none was) and how many values were redacted;
    /// the history is empty again, its columns kept for the next node's reports.
    pub fn take(&mut self) -> (Option<Vec<u8>>, u64) {
        let file = (self.reports > 0).then(|| {
            let mut out = Vec::with_capacity(self.size_hint + self.size_hint / 8);
            self.write(&mut out);
            self.size_hint = out.len();
            out
        });
        let redacted = std::mem::take(&mut self.redacted);
        self.reports = 0;
        if self.columns.len() > MAX_KEPT_COLUMNS {
            // Nodes unlike each other (map keys in paths): start afresh rather than grow.
            self.columns.clear();
            self.by_path.clear();
            self.order.clear();
            self.first = None;
        }
        for column in &mut self.columns {
            column.cells.clear();
            column.text.clear();
            column.last_text = None;
        }
        (file, redacted)
    }

    fn write(&mut self, out: &mut Vec<u8>) {
        write!(
            out,
            "{{\"format\":\"{FORMAT}\",\"reports\":{},\"columns\":[",
            self.reports
        )
        .expect("writing to a Vec");
        // Columns of earlier nodes this one does not have are left out.
        let present = self
            .order
            .iter()
            .filter(|&&c| !self.columns[c].cells.is_empty());
        for (i, &c) in present.enumerate() {
            let column = &self.columns[c];
            out.extend_from_slice(if i == 0 { b"\n" } else { b",\n" });
            out.extend_from_slice(b"{\"path\":[");
            let path = match self.redactor {
                Some(r) => r.redact_value(None, &column.path),
                None => (Cow::Borrowed(&column.path[..]), 0),
            };
            self.redacted += path.1 as u64;
            out.extend_from_slice(&path.0);
            out.extend_from_slice(b"],");
            if !column.write_steps(self.reports, out) {
                column.write_runs(self.reports, out);
            }
            out.push(b'}');
        }
        out.extend_from_slice(b"\n]}\n");
    }

    /// The value just written into `token` sits at `path`.
    fn leaf(&mut self) {
        let c = self.column();
        let report = self.reports;
        let column = &mut self.columns[c];
        let int = (!column.secret_key)
            .then(|| parse_int(&self.token))
            .flatten();
        let cell = match int {
            Some((value, quoted)) => Cell::Int { value, quoted },
            None => match column.last_text {
                Some((cell, n)) if column.last_raw == self.token => {
                    self.redacted += n;
                    cell
                }
                _ => {
                    let (value, n) = match self.redactor {
                        Some(r) if self.token.first() == Some(&b'"') => {
                            r.redact_value(column.key.as_deref(), &self.token)
                        }
                        _ => (Cow::Borrowed(&self.token[..]), 0),
                    };
                    let start = column.text.len() as u32;
                    column.text.extend_from_slice(&value);
                    let cell = Cell::Text {
                        start,
                        end: column.text.len() as u32,
                    };
                    self.redacted += n as u64;
                    column.last_raw.clear();
                    column.last_raw.extend_from_slice(&self.token);
                    column.last_text = Some((cell, n as u64));
                    cell
                }
            },
        };
        // A field twice in one report (not from serde's JSON) keeps the last value.
        column.cells.truncate(report);
        column.cells.resize(report, Cell::Absent);
        column.cells.push(cell);
        self.token.clear();
    }

    /// The column of the value at `path`, made if new.
    fn column(&mut self) -> usize {
        let predicted = match self.last {
            Some(last) => self.columns[last].next,
            None => self.first,
        };
        let c = match predicted
            .filter(|&c| self.columns[c].path == self.path)
            .or_else(|| self.by_path.get(&self.path).copied())
        {
            Some(c) => c,
            None => self.new_column(),
        };
        match self.last {
            Some(last) => self.columns[last].next = Some(c),
            None => self.first = Some(c),
        }
        self.last = Some(c);
        c
    }

    fn new_column(&mut self) -> usize {
        let c = self.columns.len();
        let key = self.frames.last().filter(|f| !f.array).map(|f| {
            let start = f.path_len + usize::from(f.path_len > 0);
            self.path[start..].to_vec()
        });
        let secret_key = match (self.redactor, &key) {
            (Some(r), Some(key)) => r.redact_value(Some(key), b"\"000\"").1 > 0,
            _ => false,
        };
        self.columns.push(Column {
            path: self.path.clone(),
            key,
            secret_key,
            cells: Vec::new(),
            text: Vec::new(),
            last_raw: Vec::new(),
            last_text: None,
            next: None,
        });
        self.by_path.insert(self.path.clone(), c);
        let after = self
            .last
            .and_then(|p| self.order.iter().position(|&o| o == p))
            .map_or(0, |i| i + 1);
        self.order.insert(after, c);
        c
    }
}

impl Column {
    /// The steps from each value to the next, if every report has this field as an integer
    /// of one kind (a number, or a string holding one) and every step fits in an i64.
    fn steps(&self, reports: usize) -> Option<(i128, bool, impl Iterator<Item = i64> + '_)> {
        let Some(&Cell::Int { value, quoted }) = self.cells.first() else {
            return None;
        };
        let steps = self.cells.windows(2).map(move |w| match (w[0], w[1]) {
            (
                Cell::Int { value: a, .. },
                Cell::Int {
                    value: b,
                    quoted: q,
                },
            ) if q == quoted => i64::try_from(b - a).ok(),
            _ => None,
        });
        let whole = self.cells.len() == reports && steps.clone().all(|s| s.is_some());
        whole.then(|| (value, quoted, steps.flatten()))
    }

    /// Writes `"start":..,"steps":[..]` if [`Column::steps`] has them; says whether it did.
    fn write_steps(&self, reports: usize, out: &mut Vec<u8>) -> bool {
        let Some((start, quoted, steps)) = self.steps(reports) else {
            return false;
        };
        out.extend_from_slice(b"\"start\":");
        write_int(out, start, quoted);
        out.extend_from_slice(b",\"steps\":[");
        let mut first = true;
        runs(steps.map(|s| (s, 1)), |step, count| {
            if !first {
                out.push(b',');
            }
            first = false;
            let mut digits = itoa::Buffer::new();
            let step = digits.format(step).as_bytes();
            if count == 1 {
                out.extend_from_slice(step);
            } else {
                out.push(b'[');
                out.extend_from_slice(itoa::Buffer::new().format(count).as_bytes());
                out.push(b',');
                out.extend_from_slice(step);
                out.push(b']');
            }
        });
        out.push(b']');
        true
    }

    /// Writes `"runs":[[count, value], [count], ..]`.
    fn write_runs(&self, reports: usize, out: &mut Vec<u8>) {
        out.extend_from_slice(b"\"runs\":[");
        let missing = reports - self.cells.len();
        let cells = self.cells.iter().map(|&c| (c, 1));
        let trailing = (missing > 0).then_some((Cell::Absent, missing));
        let mut first = true;
        runs(cells.chain(trailing), |cell, count| {
            out.extend_from_slice(if first { b"[" } else { b",[" });
            first = false;
            out.extend_from_slice(itoa::Buffer::new().format(count).as_bytes());
            match cell {
                Cell::Absent => {}
                Cell::Int { value, quoted } => {
                    out.push(b',');
                    write_int(out, value, quoted);
                }
                Cell::Text { start, end } => {
                    out.push(b',');
                    out.extend_from_slice(&self.text[start as usize..end as usize]);
                }
            }
            out.push(b']');
        });
        out.push(b']');
    }
}

/// Gives `each` every run of equal items (each item with its count) and the run's length.
fn runs<T: PartialEq>(items: impl Iterator<Item = (T, usize)>, mut each: impl FnMut(T, usize)) {
    let mut run: Option<(T, usize)> = None;
    for (item, count) in items {
        run = match run {
            Some((r, n)) if r == item => Some((r, n + count)),
            Some((r, n)) => {
                each(r, n);
                Some((item, count))
            }
            None => Some((item, count)),
        };
    }
    if let Some((r, n)) = run {
        each(r, n);
    }
}

fn write_int(out: &mut Vec<u8>, value: i128, quoted: bool) {
    if quoted {
        out.push(b'"');
    }
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    if quoted {
        out.push(b'"');
    }
}

/// An integer as JSON text, bare or in a string, written the one way it is always written
/// (no sign on zero, no leading zeros), so it reads back the same.
fn parse_int(token: &[u8]) -> Option<(i128, bool)> {
    let (digits, quoted) = match token {
        [b'"', inner @ .., b'"'] => (inner, true),
        _ => (token, false),
    };
    let (negative, unsigned) = match digits {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, digits),
    };
    let leading_zero = unsigned.first() == Some(&b'0') && (unsigned.len() > 1 || negative);
    if unsigned.is_empty() || unsigned.len() > 36 || leading_zero {
        return None;
    }
    let mut value = 0i128;
    for &d in unsigned {
        if !d.is_ascii_digit() {
            return None;
        }
        value = value * 10 + i128::from(d - b'0');
    }
    Some((if negative { -value } else { value }, quoted))
}

/// serde_json's formatter hooks, walking a report as it serializes: the path is kept as
/// keys and indices open and close, and every scalar (or empty object or array) is a leaf.
/// Nothing is written to serde's writer; scalars are written into `token`.
struct Leaves<'h, 'r>(&'h mut History<'r>);

impl Leaves<'_, '_> {
    fn scalar(&mut self, write: impl FnOnce(&mut Vec<u8>) -> io::Result<()>) -> io::Result<()> {
        write(&mut self.0.token)?;
        if !self.0.in_key {
            self.0.leaf();
        }
        Ok(())
    }

    fn open(&mut self, array: bool) {
        self.0.frames.push(Frame {
            path_len: self.0.path.len(),
            array,
            index: 0,
            empty: true,
        });
    }

    fn close(&mut self, empty_text: &[u8]) {
        let frame = self.0.frames.pop().expect("closing an open container");
        self.0.path.truncate(frame.path_len);
        if frame.empty {
            self.0.token.extend_from_slice(empty_text);
            self.0.leaf();
        }
    }

    /// Starts the next path element in the innermost container.
    fn element(&mut self) -> &mut Frame {
        let h = &mut *self.0;
        let frame = h.frames.last_mut().expect("inside a container");
        frame.empty = false;
        h.path.truncate(frame.path_len);
        if frame.path_len > 0 {
            h.path.push(b',');
        }
        frame
    }
}

macro_rules! scalars {
    ($($name:ident: $ty:ty),* $(,)?) => {$(
        fn $name<W: ?Sized + Write>(&mut self, _: &mut W, value: $ty) -> io::Result<()> {
            self.scalar(|t| CompactFormatter.$name(t, value))
        }
    )*};
}

impl Formatter for Leaves<'_, '_> {
    scalars!(
        write_bool: bool, write_i8: i8, write_i16: i16, write_i32: i32, write_i64: i64,
        write_i128: i128, write_u8: u8, write_u16: u16, write_u32: u32, write_u64: u64,
        write_u128: u128, write_f32: f32, write_f64: f64, write_number_str: &str,
        write_raw_fragment: &str,
    );

    fn write_null<W: ?Sized + Write>(&mut self, _: &mut W) -> io::Result<()> {
        self.scalar(|t| CompactFormatter.write_null(t))
    }

    fn begin_string<W: ?Sized + Write>(&mut self, _: &mut W) -> io::Result<()> {
        self.0.token.push(b'"');
        Ok(())
    }

    fn write_string_fragment<W: ?Sized + Write>(&mut self, _: &mut W, s: &str) -> io::Result<()> {
        self.0.token.extend_from_slice(s.as_bytes());
        Ok(())
    }

    fn write_char_escape<W: ?Sized + Write>(&mut self, _: &mut W, c: CharEscape) -> io::Result<()> {
        CompactFormatter.write_char_escape(&mut self.0.token, c)
    }

    fn end_string<W: ?Sized + Write>(&mut self, _: &mut W) -> io::Result<()> {
        self.scalar(|t| {
            t.push(b'"');
            Ok(())
        })
    }

    fn begin_array<W: ?Sized + Write>(&mut self, _: &mut W) -> io::Result<()> {
        self.open(true);
        Ok(())
    }

    fn end_array<W: ?Sized + Write>(&mut self, _: &mut W) -> io::Result<()> {
        self.close(b"[]");
        Ok(())
    }

    fn begin_array_value<W: ?Sized + Write>(&mut self, _: &mut W, _: bool) -> io::Result<()> {
        let frame = self.element();
        let index = frame.index;
        frame.index += 1;
        self.0
            .path
            .extend_from_slice(itoa::Buffer::new().format(index).as_bytes());
        Ok(())
    }

    fn end_array_value<W: ?Sized + Write>(&mut self, _: &mut W) -> io::Result<()> {
        Ok(())
    }

    fn begin_object<W: ?Sized + Write>(&mut self, _: &mut W) -> io::Result<()> {
        self.open(false);
        Ok(())
    }

    fn end_object<W: ?Sized + Write>(&mut self, _: &mut W) -> io::Result<()> {
        self.close(b"{}");
        Ok(())
    }

    fn begin_object_key<W: ?Sized + Write>(&mut self, _: &mut W, _: bool) -> io::Result<()> {
        self.element();
        self.0.in_key = true;
        Ok(())
    }

    fn end_object_key<W: ?Sized + Write>(&mut self, _: &mut W) -> io::Result<()> {
        let h = &mut *self.0;
        h.in_key = false;
        h.path.extend_from_slice(&h.token);
        h.token.clear();
        Ok(())
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, _: &mut W) -> io::Result<()> {
        Ok(())
    }

    fn end_object_value<W: ?Sized + Write>(&mut self, _: &mut W) -> io::Result<()> {
        Ok(())
    }
}

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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn written(reports: &[Value], redactor: Option<&Redactor>) -> (Vec<u8>, u64) {
        written_by(&mut History::new(redactor), reports)
    }

    fn written_by(history: &mut History<'_>, reports: &[Value]) -> (Vec<u8>, u64) {
        for r in reports {
            history.add(r).unwrap();
        }
        let (out, redacted) = history.take();
        (out.expect("reports were added"), redacted)
    }

    #[test]
    fn one_history_serves_node_after_node() {
        let mut history = History::new(None);
        let a: Vec<Value> = (0..5)
            .map(|i| json!({"seq": i, "only_a": "x", "b": [i]}))
            .collect();
        let b: Vec<Value> = (0..3).map(|i| json!({"seq": i * 2, "b": []})).collect();
        let (text, _) = written_by(&mut history, &a);
        assert_eq!(rows(&text).unwrap().collect::<Vec<_>>(), a);
        let (text, _) = written_by(&mut history, &b);
        assert_eq!(rows(&text).unwrap().collect::<Vec<_>>(), b);
        assert!(!String::from_utf8(text).unwrap().contains("only_a"));
        assert_eq!(history.take(), (None, 0), "nothing added since");
    }

    #[test]
    fn every_report_reads_back_as_it_was() {
        let mut reports = Vec::new();
        for i in 0..40u64 {
            let mut r = json!({
                "node": "node-a",
                "seq": (i + 1).to_string(),
                "uptime": 1000 + 10 * i,
                "bytes": ((i * 7919) % 13 * 4096).to_string(),
                "psi": {"avg10": i as f64 / 7.0, "avg60": 0.25},
                "text": format!("line \"{i}\" ünï\n\ttab"),
                "negative": -(i as i64) * 3,
                "pressure": {},
                "tags": [],
                "flag": i % 2 == 0,
                "nothing": null,
                // a jump no i64 step holds, back and forth
                "limit": if i % 5 == 0 { u64::MAX.to_string() } else { "0".to_owned() },
                // read back exactly (serde_json's float_roundtrip; found by fuzz/bundle_history)
                "huge": 2.0000000000000007e72 * i as f64,
                "zeros": if i % 3 == 0 { "007" } else { "0" },
                "processes": (0..(i % 4)).map(|p| json!({"pid": p, "name": format!("p{p}")})).collect::<Vec<_>>(),
            });
            if i % 6 == 0 {
                r["sometimes"] = json!({"deep": [1, {"x": "y"}]});
            }
            if i > 20 {
                r["psi"]["late"] = json!(i);
            }
            reports.push(r);
        }
        let (text, _) = written(&reports, None);
        let read = rows(&text).unwrap();
        assert_eq!(read.len(), 40);
        let back: Vec<Value> = read.collect();
        assert_eq!(back, reports);
        let text = String::from_utf8(text).unwrap();
        assert!(
            text.contains(r#"{"path":["uptime"],"start":1000,"steps":[[39,10]]}"#),
            "{text}"
        );
        assert!(text.contains(r#"{"path":["node"],"runs":[[40,"node-a"]]}"#));
        assert!(text.contains(r#"{"path":["limit"],"runs":[[1,"18446744073709551615"],[4,"0"],"#));
    }

    #[test]
    fn a_field_keeps_its_place_among_the_others() {
        let reports = [json!({"a": 1, "c": 3}), json!({"a": 1, "b": 2, "c": 3})];
        let (text, _) = written(&reports, None);
        let text = String::from_utf8(text).unwrap();
        let (a, b, c) = (
            text.find(r#"["a"]"#).unwrap(),
            text.find(r#"["b"]"#).unwrap(),
            text.find(r#"["c"]"#).unwrap(),
        );
        assert!(a < b && b < c, "{text}");
    }

    #[test]
    fn credentials_are_redacted_value_by_value_and_counted_per_report() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N";
        let reports: Vec<Value> = (0..10)
            .map(|i| {
                json!({
                    "env": {"DB_PASSWORD": "hunter22", "PATH": "/usr/bin"},
                    "apiToken": (123_456 + i).to_string(),
                    "cmdline": format!("app --token={jwt}"),
                    "seq": i.to_string(),
                })
            })
            .collect();
        let redactor = Redactor::default();
        let (text, redacted) = written(&reports, Some(&redactor));
        let text = String::from_utf8(text).unwrap();
        for secret in ["hunter22", "123456", "eyJhbGci"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(text.contains("/usr/bin"));
        assert_eq!(redacted, 30, "three values in each of ten reports");
        let back: Vec<Value> = rows(text.as_bytes()).unwrap().collect();
        assert_eq!(back[3]["env"]["DB_PASSWORD"], "[REDACTED]");
        assert_eq!(back[3]["apiToken"], "[REDACTED]");
        assert_eq!(back[3]["seq"], "3");
        let (kept, _) = written(&reports, None);
        assert!(String::from_utf8(kept).unwrap().contains("hunter22"));
    }

    #[test]
    fn a_history_that_does_not_add_up_is_refused_with_its_column() {
        let bad = |text: &str| match rows(text.as_bytes()) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("accepted {text}"),
        };
        let doc =
            |columns: &str| format!(r#"{{"format":"{FORMAT}","reports":3,"columns":[{columns}]}}"#);
        assert!(
            bad(&doc(r#"{"path":["a"],"runs":[[2,1]]}"#))
                .contains("column [\"a\"]: 2 values for 3 reports")
        );
        assert!(
            bad(&doc(r#"{"path":["a"],"start":1,"steps":[1,1,1]}"#))
                .contains("3 values for 2 reports")
        );
        assert!(
            bad(&doc(r#"{"path":["a"],"start":"x","steps":[[2,1]]}"#))
                .contains("start is not an integer")
        );
        assert!(bad(&doc(r#"{"path":["a"],"runs":[[0,1],[3,1]]}"#)).contains("a count of 0"));
        assert!(bad(&doc(r#"{"path":["a",1000000],"runs":[[3,1]]}"#)).contains("array index"));
        assert!(bad(&doc(r#"{"path":["a"]}"#)).contains("neither runs"));
        assert!(bad(r#"{"format":"other","reports":1,"columns":[]}"#).contains("format \"other\""));
        assert!(
            bad(&format!(
                r#"{{"format":"{FORMAT}","reports":1000000000000,"columns":[]}}"#
            ))
            .contains("claimed")
        );
        assert!(bad("{\"format\":").contains("not a nodemedic.history.v1 history"));
    }
}
