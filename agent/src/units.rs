//! Small value types every probe's settings and judgements share: a validated percentage
//! and the share of a whole. A leaf: it imports nothing of the crate.

use serde::Deserialize;

/// A percentage from 0 to 100.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Deserialize)]
#[serde(try_from = "f64")]
pub struct Percent(f64);

impl Percent {
    /// The value, 0 to 100.
    pub const fn get(self) -> f64 {
        self.0
    }

    /// A percentage known to be in range (for defaults).
    pub(crate) const fn of(value: f64) -> Self {
        Percent(value)
    }
}

impl TryFrom<f64> for Percent {
    type Error = String;
    fn try_from(value: f64) -> Result<Self, String> {
        if (0.0..=100.0).contains(&value) {
            Ok(Percent(value))
        } else {
            Err(format!("{value} is not a percentage from 0 to 100"))
        }
    }
}

/// `part` as a percentage of `whole`; 0 when `whole` is 0.
pub fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// The first pair `(a, b, a_is_at_least_b)` out of order, as "a must be at least b".
pub(crate) fn ordered(pairs: &[(&str, &str, bool)]) -> Result<(), String> {
    match pairs.iter().find(|(_, _, ok)| !ok) {
        Some((a, b, _)) => Err(format!("{a} must be at least {b}")),
        None => Ok(()),
    }
}

/// `at_least!(settings: a >= b, c >= d)`: the first field pair of `settings` out of order,
/// as "a must be at least b" (a warning line that comes after its critical one).
macro_rules! at_least {
    ($s:ident: $($a:ident >= $b:ident),+ $(,)?) => {
        $crate::units::ordered(&[$((stringify!($a), stringify!($b), $s.$a >= $s.$b)),+])
    };
}
pub(crate) use at_least;

/// A time as RFC 3339 in whole seconds, UTC (`2026-12-07T06:50:00Z`): the form of a
/// Kubernetes `Time` and of the times in findings' evidence.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}
