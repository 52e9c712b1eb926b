//! A finding open on a node, as the store's writer holds it and the correlator counts it.
//! A leaf: the store and the incidents both use it, and it uses neither.

use nodemedic_proto::{time::timestamp_from_millis, v1::Finding};

/// A finding open on a node, as the writer holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenFinding {
    /// Row id.
    pub id: i64,
    /// First seen, unix ms.
    pub first_seen: i64,
    /// Latest report that had it, unix ms.
    pub last_seen: i64,
    /// As last reported (without the collector's fields).
    pub finding: Finding,
}

impl OpenFinding {
    /// The finding with the collector's fields (id, first/last seen, resolution) set.
    pub fn stamped(&self, resolved_at: Option<i64>) -> Finding {
        let mut f = self.finding.clone();
        f.id = self.id as u64;
        f.first_seen = Some(timestamp_from_millis(self.first_seen));
        f.last_seen = Some(timestamp_from_millis(self.last_seen));
        f.resolved_at = resolved_at.map(timestamp_from_millis);
        f
    }

    /// The finding's key on its node: check and subject.
    pub fn key(&self) -> (&str, &str) {
        (&self.finding.check, &self.finding.subject)
    }
}
