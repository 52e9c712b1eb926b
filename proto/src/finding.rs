//! Building [`Finding`]s and [`Evidence`], and naming severities the way people read them.

use crate::v1::{Evidence, Finding, FindingStatus, MountRole, Severity, evidence};

impl Finding {
    /// A failed check: the condition holds.
    pub fn fail(check: &str, severity: Severity, subject: &str, message: String) -> Self {
        Finding {
            check: check.to_owned(),
            severity: severity as i32,
            status: FindingStatus::Fail as i32,
            subject: subject.to_owned(),
            message,
            ..Default::default()
        }
    }

    /// A check that could not be made: the condition is unknown, never "healthy".
    pub fn unknown(check: &str, severity: Severity, subject: &str, message: String) -> Self {
        Finding {
            status: FindingStatus::Unknown as i32,
            ..Self::fail(check, severity, subject, message)
        }
    }

    /// Adds one piece of evidence.
    #[must_use]
    pub fn with(mut self, evidence: Evidence) -> Self {
        self.evidence.push(evidence);
        self
    }

    /// The probe that owns this finding's check: the part before the first `.`.
    pub fn probe(&self) -> &str {
        self.check.split('.').next().unwrap_or_default()
    }

    /// A number of the evidence, by key.
    pub fn number(&self, key: &str) -> Option<f64> {
        self.evidence
            .iter()
            .find(|e| e.key == key)
            .and_then(|e| match e.value {
                Some(evidence::Value::Number(n)) => Some(n),
                _ => None,
            })
    }

    /// A text of the evidence, by key.
    pub fn text(&self, key: &str) -> Option<&str> {
        self.evidence
            .iter()
            .find(|e| e.key == key)
            .and_then(|e| match &e.value {
                Some(evidence::Value::Text(t)) => Some(t.as_str()),
                _ => None,
            })
    }
}

impl crate::v1::Remediation {
    /// The commands of its steps, in order (steps without one are skipped).
    pub fn commands(&self) -> impl Iterator<Item = &str> {
        self.steps
            .iter()
            .map(|s| s.command.as_str())
            .filter(|c| !c.is_empty())
    }
}

impl Evidence {
    /// A number with its unit.
    pub fn number(key: &str, value: f64, unit: &str) -> Self {
        Evidence {
            key: key.to_owned(),
            value: Some(evidence::Value::Number(value)),
            unit: unit.to_owned(),
        }
    }

    /// A byte count.
    pub fn bytes(key: &str, value: u64) -> Self {
        Self::number(key, value as f64, "bytes")
    }

    /// A percentage, 0 to 100.
    pub fn percent(key: &str, value: f64) -> Self {
        Self::number(key, value, "percent")
    }

    /// A count of things.
    pub fn count(key: &str, value: u64) -> Self {
        Self::number(key, value as f64, "count")
    }

    /// A text.
    pub fn text(key: &str, value: impl Into<String>) -> Self {
        Evidence {
            key: key.to_owned(),
            value: Some(evidence::Value::Text(value.into())),
            unit: String::new(),
        }
    }
}

impl Severity {
    /// Lower-case name as printed in tables and accepted on the command line.
    pub fn label(self) -> &'static str {
        match self {
            Severity::Unspecified => "none",
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    /// Parses a [`Severity::label`].
    pub fn from_label(label: &str) -> Option<Self> {
        [Severity::Info, Severity::Warning, Severity::Critical]
            .into_iter()
            .find(|s| s.label().eq_ignore_ascii_case(label))
    }
}

impl FindingStatus {
    /// Lower-case name as printed in tables.
    pub fn label(self) -> &'static str {
        match self {
            FindingStatus::Unspecified => "none",
            FindingStatus::Fail => "fail",
            FindingStatus::Unknown => "unknown",
        }
    }
}

impl MountRole {
    /// Lower-case name as printed and as carried in `roles` evidence (runbook rules match it).
    pub fn label(self) -> &'static str {
        match self {
            MountRole::Unspecified => "",
            MountRole::Root => "root",
            MountRole::Kubelet => "kubelet",
            MountRole::Images => "images",
            MountRole::Logs => "logs",
            MountRole::Volume => "pod volume",
        }
    }
}

impl crate::v1::Mount {
    /// Space used as `df` counts it, % of the size (reserved blocks count as used: what
    /// is not available); `None` for a filesystem of no size.
    pub fn used_percent(&self) -> Option<f64> {
        (self.bytes_total > 0).then(|| {
            (self.bytes_total - self.bytes_available.min(self.bytes_total)) as f64 * 100.0
                / self.bytes_total as f64
        })
    }
}

/// Formats a byte count with binary units, as people read disk sizes: `1.5 GiB`.
pub fn human_bytes(bytes: f64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes;
    let mut unit = 0;
    while value.abs() >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_uses_binary_units() {
        assert_eq!(human_bytes(512.0), "512 B");
        assert_eq!(human_bytes(1536.0), "1.5 KiB");
        assert_eq!(human_bytes(100.0 * 1024.0 * 1024.0), "100.0 MiB");
    }

    #[test]
    fn severity_labels_round_trip() {
        for s in [Severity::Info, Severity::Warning, Severity::Critical] {
            assert_eq!(Severity::from_label(s.label()), Some(s));
        }
        assert_eq!(Severity::from_label("CRITICAL"), Some(Severity::Critical));
        assert_eq!(Severity::from_label("bad"), None);
    }

    #[test]
    fn finding_json_uses_stable_names() {
        let f = Finding::fail("disk.space", Severity::Critical, "/", "full".into())
            .with(Evidence::bytes("available_bytes", 10));
        let json = serde_json::to_value(&f).unwrap();
        assert_eq!(json["check"], "disk.space");
        assert_eq!(json["severity"], "SEVERITY_CRITICAL");
        assert_eq!(json["status"], "FINDING_STATUS_FAIL");
        assert_eq!(json["evidence"][0]["number"], 10.0);
        let back: Finding = serde_json::from_value(json).unwrap();
        assert_eq!(back, f);
        assert_eq!(back.probe(), "disk");
        assert_eq!(back.number("available_bytes"), Some(10.0));
    }
}
