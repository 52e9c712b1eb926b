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

use serde::Serialize;
use serde_json::ser::{CharEscape, CompactFormatter, Formatter};

use self::format::{parse_int, write_int};
pub use self::{
    format::FORMAT,
    read::{HistoryError, Rows, rows},
};
use super::redact::{REDACTED, Redactor};

/// Columns kept from one node for the next: beyond, the next starts with none.
const MAX_KEPT_COLUMNS: usize = 4096;

mod format;
mod read;
#[cfg(test)]
mod tests;

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
    /// An object whose `key` says its `text` is a credential (a finding's evidence named
    /// `password`, `api_token`, ...).
    secret_text: bool,
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
        let secret_text = self.frames.last().is_some_and(|f| f.secret_text);
        let column = &mut self.columns[c];
        let (is_key, is_text) = match column.key.as_deref() {
            Some(b"\"key\"") => (true, false),
            Some(b"\"text\"") => (false, true),
            _ => (false, false),
        };
        if is_key
            && let Some(r) = self.redactor
            && r.redact_value(Some(&self.token), b"\"000\"").1 > 0
            && let Some(frame) = self.frames.last_mut()
        {
            frame.secret_text = true;
        }
        let int = (!column.secret_key)
            .then(|| parse_int(&self.token))
            .flatten();
        let cell = match int {
            Some((value, quoted)) => Cell::Int { value, quoted },
            // Evidence whose key names a credential: its text is one, whatever it looks like.
            None if secret_text && is_text && self.redactor.is_some() => {
                let start = column.text.len() as u32;
                column
                    .text
                    .extend_from_slice(format!("\"{REDACTED}\"").as_bytes());
                self.redacted += 1;
                Cell::Text {
                    start,
                    end: column.text.len() as u32,
                }
            }
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
            secret_text: false,
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
