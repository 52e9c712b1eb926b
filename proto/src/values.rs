//! Every value of a message within what nodemedic's programs can handle, checked by walking
//! the message as it serializes to proto3 JSON (so a field added to the protos is covered
//! without a line here):
//!
//! - enums name a known variant (pbjson refuses an unknown one, which would otherwise make
//!   every later JSON answer and bundle holding it fail);
//! - timestamps lie between 1970 and a year past the checker's clock (a time before 1970
//!   or in the year 10^11 cannot be printed or computed with);
//! - durations are not negative and at most a year;
//! - numbers are finite and at most 10^18 in size (an `inf` forecast overflows what is
//!   computed from it);
//! - strings are at most [`MAX_VALUE`] bytes and hold no control characters but tab and line
//!   breaks (they reach terminals, tables and HTML).
//!
//! The collector checks every report at ingest and every row it reads back; the agent fits
//! its reports to this before sending ([`fit`]), so no state of a node makes them
//! unacceptable.

use std::{fmt, time::SystemTime};

use serde::{Serialize, ser};

/// Longest string value anywhere in a message, bytes.
pub const MAX_VALUE: usize = 64 << 10;
/// Largest number a message may hold, in size.
pub const MAX_NUMBER: f64 = 1e18;
/// A timestamp may be at most this far ahead of the checker's clock, seconds.
const FUTURE_SECONDS: i64 = 366 * 86_400;
/// The longest duration a message may hold, seconds.
const MAX_DURATION_SECONDS: f64 = 366.0 * 86_400.0;

/// The JSON names of every `google.protobuf.Timestamp` field in the protos (a test checks
/// the list against the descriptors).
pub const TIMESTAMP_FIELDS: &[&str] = &[
    "at",
    "collectedAt",
    "created",
    "createdAt",
    "expiresAt",
    "failureExpectedAt",
    "finishedAt",
    "firstAt",
    "firstSeen",
    "lastAt",
    "lastReport",
    "lastSeen",
    "notAfter",
    "notBefore",
    "requestedAt",
    "resolvedAt",
    "scannedAt",
    "since",
    "startedAt",
    "unschedulableSince",
    "until",
];

/// The JSON names of every `google.protobuf.Duration` field in the protos (`since` is a
/// Timestamp in one message and a Duration in another: told apart by the value's form).
pub const DURATION_FIELDS: &[&str] = &["interval", "olderThan", "since"];

/// A value out of bounds: where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError {
    /// The field, as a JSON path (`disk.mounts[].mountPoint`).
    pub path: String,
    /// What is wrong with its value.
    pub reason: String,
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "{}: {}", self.path, self.reason)
        }
    }
}

impl std::error::Error for ValueError {}

impl ser::Error for ValueError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        ValueError {
            path: String::new(),
            reason: msg.to_string(),
        }
    }
}

/// Checks every value of `message` against the bounds above, as of `now`.
pub fn check(message: &impl Serialize, now: SystemTime) -> Result<(), ValueError> {
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let mut walker = Walker {
        path: Vec::new(),
        latest_year: year_of(now + FUTURE_SECONDS),
    };
    message.serialize(&mut walker).map_err(|mut e| {
        if e.path.is_empty() {
            e.path = walker.path_text();
        }
        e
    })
}

/// The year of a unix time (UTC), by the civil-from-days algorithm.
fn year_of(unix_seconds: i64) -> i64 {
    let days = unix_seconds.div_euclid(86_400) + 719_468;
    let era = days.div_euclid(146_097);
    let doe = days - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    yoe + era * 400 + i64::from(month <= 2)
}

/// Where a walk is: the field names down to the value (indices and map keys as `[]`).
enum Step {
    Field(&'static str),
    Item,
}

struct Walker {
    path: Vec<Step>,
    latest_year: i64,
}

impl Walker {
    fn path_text(&self) -> String {
        let mut out = String::new();
        for step in &self.path {
            match step {
                Step::Field(name) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(name);
                }
                Step::Item => out.push_str("[]"),
            }
        }
        out
    }

    fn fail(&self, reason: String) -> ValueError {
        ValueError {
            path: self.path_text(),
            reason,
        }
    }

    fn field(&self) -> &str {
        match self.path.last() {
            Some(Step::Field(name)) => name,
            _ => "",
        }
    }

    fn number(&self, v: f64) -> Result<(), ValueError> {
        if v.is_finite() && v.abs() <= MAX_NUMBER {
            Ok(())
        } else {
            Err(self.fail(format!("{v} is not a finite number of at most 1e18")))
        }
    }

    fn string(&self, v: &str) -> Result<(), ValueError> {
        let field = self.field();
        if DURATION_FIELDS.contains(&field)
            && (v.ends_with('s') || !TIMESTAMP_FIELDS.contains(&field))
        {
            return self.duration(v);
        }
        if TIMESTAMP_FIELDS.contains(&field) {
            return self.timestamp(v);
        }
        if v.len() > MAX_VALUE {
            return Err(self.fail(format!(
                "a string of {} bytes, more than {MAX_VALUE}",
                v.len()
            )));
        }
        if let Some(c) = v
            .chars()
            .find(|&c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
        {
            return Err(self.fail(format!("control character {:?} in a string", c)));
        }
        Ok(())
    }

    /// An RFC 3339 time as pbjson writes it: the year first (`-0001`, `+10000`, `2026`).
    fn timestamp(&self, v: &str) -> Result<(), ValueError> {
        let digits_end = v
            .char_indices()
            .skip(1)
            .find(|(_, c)| *c == '-')
            .map_or(v.len(), |(i, _)| i);
        let year: i64 = v[..digits_end]
            .parse()
            .map_err(|_| self.fail(format!("{v:?} is not a timestamp")))?;
        if (1970..=self.latest_year).contains(&year) {
            Ok(())
        } else {
            Err(self.fail(format!(
                "time {v} is outside 1970 to {} (a year past this clock)",
                self.latest_year
            )))
        }
    }

    /// A duration as pbjson writes it: seconds with an `s` (`10s`, `-1.5s`).
    fn duration(&self, v: &str) -> Result<(), ValueError> {
        let seconds: f64 = v
            .strip_suffix('s')
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| self.fail(format!("{v:?} is not a duration")))?;
        if (0.0..=MAX_DURATION_SECONDS).contains(&seconds) {
            Ok(())
        } else {
            Err(self.fail(format!("duration {v} is negative or longer than a year")))
        }
    }
}

type Result2 = Result<(), ValueError>;

/// The serializer methods for values a walk has nothing to check in.
macro_rules! nothing_to_check {
    ($($method:ident($t:ty)),* $(,)?) => {
        $(fn $method(self, _: $t) -> Result2 {
            Ok(())
        })*
    };
}

impl ser::Serializer for &mut Walker {
    type Ok = ();
    type Error = ValueError;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    nothing_to_check!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_bytes(&[u8]),
        serialize_unit_struct(&'static str),
    );
    fn serialize_f32(self, v: f32) -> Result2 {
        self.number(f64::from(v))
    }
    fn serialize_f64(self, v: f64) -> Result2 {
        self.number(v)
    }
    fn serialize_char(self, v: char) -> Result2 {
        self.string(v.encode_utf8(&mut [0; 4]))
    }
    fn serialize_str(self, v: &str) -> Result2 {
        self.string(v)
    }
    fn serialize_none(self) -> Result2 {
        Ok(())
    }
    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result2 {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result2 {
        Ok(())
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Result2 {
        Ok(())
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result2 {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        value: &T,
    ) -> Result2 {
        value.serialize(self)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self, ValueError> {
        Ok(self)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self, ValueError> {
        Ok(self)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, ValueError> {
        Ok(self)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, ValueError> {
        Ok(self)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self, ValueError> {
        Ok(self)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, ValueError> {
        Ok(self)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, ValueError> {
        Ok(self)
    }
}

impl Walker {
    fn item<T: ?Sized + Serialize>(&mut self, value: &T) -> Result2 {
        self.path.push(Step::Item);
        value.serialize(&mut *self)?;
        self.path.pop();
        Ok(())
    }

    fn named<T: ?Sized + Serialize>(&mut self, key: &'static str, value: &T) -> Result2 {
        self.path.push(Step::Field(key));
        value.serialize(&mut *self)?;
        self.path.pop();
        Ok(())
    }
}

/// The sequences a walk goes through item by item.
macro_rules! items {
    ($($trait:ident::$method:ident),* $(,)?) => {
        $(impl ser::$trait for &mut Walker {
            type Ok = ();
            type Error = ValueError;
            fn $method<T: ?Sized + Serialize>(&mut self, value: &T) -> Result2 {
                self.item(value)
            }
            fn end(self) -> Result2 {
                Ok(())
            }
        })*
    };
}

items!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field,
);

impl ser::SerializeMap for &mut Walker {
    type Ok = ();
    type Error = ValueError;
    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Result2 {
        // Map keys are strings (labels, names): the same rules as any string.
        self.item(key)
    }
    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result2 {
        self.item(value)
    }
    fn end(self) -> Result2 {
        Ok(())
    }
}

/// The structures a walk goes through field by field.
macro_rules! fields {
    ($($trait:ident),* $(,)?) => {
        $(impl ser::$trait for &mut Walker {
            type Ok = ();
            type Error = ValueError;
            fn serialize_field<T: ?Sized + Serialize>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result2 {
                self.named(key, value)
            }
            fn end(self) -> Result2 {
                Ok(())
            }
        })*
    };
}

fields!(SerializeStruct, SerializeStructVariant);

/// `report` made to pass [`check`] as far as its strings and numbers go: control
/// characters written as `\u{…}`, strings cut to [`MAX_VALUE`] bytes, numbers that are not
/// finite or too large left out (as unknown). Costs one walk when nothing is wrong; only a
/// report with something to fix is rebuilt (through its JSON form).
pub fn fit(report: &mut crate::v1::NodeReport, now: SystemTime) {
    if check(&*report, now).is_ok() {
        return;
    }
    let Ok(mut json) = serde_json::to_value(&*report) else {
        return;
    };
    fit_value(&mut json, "");
    if let Ok(fitted) = serde_json::from_value(json) {
        *report = fitted;
    }
}

fn fit_value(value: &mut serde_json::Value, field: &str) {
    use serde_json::Value;
    match value {
        Value::String(s)
            if !TIMESTAMP_FIELDS.contains(&field) && !DURATION_FIELDS.contains(&field) =>
        {
            crate::limits::fit_text(s, MAX_VALUE);
        }
        Value::Number(n) if n.as_f64().is_some_and(|v| v.abs() > MAX_NUMBER) => {
            *value = Value::Null
        }
        Value::Array(items) => items.iter_mut().for_each(|v| fit_value(v, "")),
        Value::Object(fields) => {
            let keys: Vec<String> = fields.keys().cloned().collect();
            for key in keys {
                let mut fixed = key.clone();
                crate::limits::fit_text(&mut fixed, MAX_VALUE);
                let mut v = fields.remove(&key).unwrap_or(Value::Null);
                fit_value(&mut v, &key);
                fields.insert(fixed, v);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use prost::Message;

    use super::*;
    use crate::v1::{
        DiskSection, Evidence, Finding, MemorySection, Mount, NodeReport, ProcessMemory, Severity,
    };

    const NOW: u64 = 1_800_000_000;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(NOW)
    }

    fn report() -> NodeReport {
        NodeReport {
            node: "n1".into(),
            seq: 1,
            collected_at: Some(crate::time::timestamp(now())),
            findings: vec![
                Finding::fail("disk.space", Severity::Warning, "/", "m".into())
                    .with(Evidence::number("x", 1.5, "s")),
            ],
            disk: Some(DiskSection {
                mounts: vec![Mount {
                    mount_point: "/var".into(),
                    fill_rate_bytes_per_hour: Some(10.0),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_plain_report_passes() {
        check(&report(), now()).unwrap();
    }

    #[test]
    fn every_kind_of_bad_value_is_named_with_its_path() {
        type Change = Box<dyn Fn(&mut NodeReport)>;
        let cases: Vec<(Change, &str, &str)> = vec![
            (
                Box::new(|r| r.findings[0].severity = 99),
                "findings[]",
                "variant 99",
            ),
            (
                Box::new(|r| r.findings[0].status = 7),
                "findings[]",
                "variant 7",
            ),
            (
                Box::new(|r| r.collected_at.as_mut().unwrap().seconds = -86_400),
                "collectedAt",
                "1969",
            ),
            (
                Box::new(|r| {
                    r.collected_at.as_mut().unwrap().seconds = 100_000_000_000 * 31_557_600
                }),
                "collectedAt",
                "",
            ),
            (
                Box::new(|r| {
                    r.disk.as_mut().unwrap().mounts[0].fill_rate_bytes_per_hour =
                        Some(f64::INFINITY)
                }),
                "disk.mounts[].fillRateBytesPerHour",
                "finite",
            ),
            (
                Box::new(|r| r.disk.as_mut().unwrap().mounts[0].full_in_hours = Some(1e300)),
                "disk.mounts[].fullInHours",
                "finite",
            ),
            (
                Box::new(|r| r.disk.as_mut().unwrap().mounts[0].mount_point = "/x\u{1b}[2J".into()),
                "disk.mounts[].mountPoint",
                "control character",
            ),
            (
                Box::new(|r| {
                    r.memory = Some(MemorySection {
                        top_processes: vec![ProcessMemory {
                            name: "a".repeat(MAX_VALUE + 1),
                            ..Default::default()
                        }],
                        ..Default::default()
                    })
                }),
                "memory.topProcesses[].name",
                "bytes",
            ),
            (
                Box::new(|r| {
                    r.findings[0].evidence[0].value =
                        Some(crate::v1::evidence::Value::Number(f64::NAN))
                }),
                "findings[].evidence[]",
                "finite",
            ),
        ];
        for (change, path, reason) in cases {
            let mut r = report();
            change(&mut r);
            let err = check(&r, now()).unwrap_err();
            assert!(err.path.starts_with(path), "{path}: {err}");
            assert!(err.to_string().contains(reason), "{path}: {err}");
        }
    }

    #[test]
    fn fit_mends_what_a_node_can_hold_and_keeps_the_rest() {
        let mut r = report();
        r.disk.as_mut().unwrap().mounts[0].mount_point = "/mnt/a\u{7}b".into();
        r.disk.as_mut().unwrap().mounts[0].full_in_hours = Some(f64::INFINITY);
        let before = r.encode_to_vec().len();
        fit(&mut r, now());
        check(&r, now()).unwrap();
        let m = &r.disk.as_ref().unwrap().mounts[0];
        assert_eq!(m.mount_point, "/mnt/a\\u{7}b");
        assert_eq!(
            m.full_in_hours, None,
            "a number that is not finite is left out"
        );
        assert_eq!(m.fill_rate_bytes_per_hour, Some(10.0));
        assert_eq!(r.findings[0].check, "disk.space");
        assert!(r.encode_to_vec().len() >= before - 16);
        let plain = report();
        let mut same = plain.clone();
        fit(&mut same, now());
        assert_eq!(same, plain, "nothing to fit: untouched");
    }

    #[test]
    fn the_years_are_counted_right() {
        assert_eq!(year_of(0), 1970);
        assert_eq!(year_of(951_782_400), 2000); // 2000-02-29
        assert_eq!(year_of(1_800_000_000), 2027);
        assert_eq!(year_of(-1), 1969);
    }

    /// Every Timestamp and Duration field of the protos is in the lists, and no field of
    /// another type shares a name with one (the walk knows a field only by its name).
    #[test]
    fn the_field_lists_match_the_protos() {
        let set = prost_types::FileDescriptorSet::decode(crate::FILE_DESCRIPTOR_SET).unwrap();
        let mut timestamps = std::collections::BTreeSet::new();
        let mut durations = std::collections::BTreeSet::new();
        let mut others = std::collections::BTreeSet::new();
        fn walk(
            m: &prost_types::DescriptorProto,
            out: &mut [&mut std::collections::BTreeSet<String>; 3],
        ) {
            for f in &m.field {
                let name = f.json_name().to_owned();
                match f.type_name() {
                    ".google.protobuf.Timestamp" => out[0].insert(name),
                    ".google.protobuf.Duration" => out[1].insert(name),
                    _ => out[2].insert(name),
                };
            }
            for nested in &m.nested_type {
                walk(nested, out);
            }
        }
        for file in &set.file {
            for m in &file.message_type {
                walk(m, &mut [&mut timestamps, &mut durations, &mut others]);
            }
        }
        for (kind, found, listed) in [
            ("Timestamp", &timestamps, TIMESTAMP_FIELDS),
            ("Duration", &durations, DURATION_FIELDS),
        ] {
            for name in found {
                assert!(
                    listed.contains(&name.as_str()),
                    "{kind} field {name} is not in the {kind} list"
                );
                assert!(
                    !others.contains(name),
                    "{name} is a {kind} in one message and a plain field in another"
                );
            }
            for name in listed {
                assert!(
                    found.contains(*name),
                    "{name} is listed but no {kind} field"
                );
            }
        }
    }
}
