//! Correlation: a cluster's findings become incidents.
//!
//! The store writer hands the [`Correlator`] a node's open findings after each of its reports
//! (and when the node falls silent); the correlator answers which incidents opened, changed
//! or resolved, and the writer stores those changes in the same transaction as the report.
//!
//! - **Hold**: a finding counts once it has persisted for `hold` (first to last seen) or
//!   opened `repeat` times within `repeat_window`; a finding the collector raises itself
//!   (`node.silent`) counts at once. A finding that comes and goes opens nothing. Once
//!   counted, it keeps counting for `hold` after it resolves, so an incident resolves only
//!   when its trouble has stayed away that long.
//! - **Node incidents**: a counted finding is described by its node rule (the most
//!   specific, [`Catalog::node_rule`]); findings of the checks a rule lists as
//!   `consequences` join the incident of that rule's finding on the same node. One incident
//!   per node and rule.
//! - **Cluster incidents**: nodes are counted per cluster rule (and `group_by` value). When
//!   enough of them (`min_nodes`, default 2; `min_share` of the reporting nodes; first seen
//!   `within` of each other) have matching findings, one cluster incident opens and takes
//!   those findings from their node incidents; other nodes' matching findings join it while
//!   it is open. Never N copies of a node incident.
//! - An incident resolves when its last finding resolves, or moves into another incident
//!   (its timeline then says which).
//!
//! All state is in memory, rebuilt from the stored open incidents and findings at start
//! ([`Correlator::restore_incident`], [`Correlator::restore_node`]); only the count of
//! recent openings (for `repeat`) starts again empty.

mod describe;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use nodemedic_proto::{
    time::timestamp_from_millis,
    v1::{Incident, IncidentEvent, IncidentScope, IncidentState, incident_event::Kind},
};

use crate::{open_finding::OpenFinding, runbook::Catalog};

/// The check the collector raises for a node that stopped reporting.
pub const SILENT_CHECK: &str = nodemedic_proto::checks::NODE_SILENT;
/// Most timeline entries kept per incident (the first, its opening, always stays).
const MAX_TIMELINE: usize = 100;
/// A forecast moving by more than this share updates its incident.
const FORECAST_TOLERANCE: f64 = 0.1;
/// An open incident is re-described and stored at most this often (unix ms); changes in
/// between wait for [`Correlator::flush`]. A cluster incident that thousands of nodes join
/// within seconds is then written about once a second, not once per node.
const UPDATE_EVERY_MS: i64 = 1000;

/// How findings become incidents.
#[derive(Debug, Clone)]
pub struct IncidentConfig {
    /// A finding counts once it has persisted this long.
    pub hold: Duration,
    /// ... or once it opened this many times within `repeat_window`.
    pub repeat: u32,
    /// The window for `repeat`.
    pub repeat_window: Duration,
}

impl Default for IncidentConfig {
    fn default() -> Self {
        IncidentConfig {
            hold: Duration::from_secs(30),
            repeat: 3,
            repeat_window: Duration::from_secs(15 * 60),
        }
    }
}

impl IncidentConfig {
    /// For a single report (`nodemedic doctor`): no hold, since one sample cannot show that
    /// a finding persists.
    pub fn one_report() -> Self {
        IncidentConfig {
            hold: Duration::ZERO,
            ..IncidentConfig::default()
        }
    }
}

/// One stored change: the incident as it is now, and its correlation key.
#[derive(Debug, Clone)]
pub struct Change {
    /// Stable while the incident is open: `node/<node>/<rule>` or `cluster/<rule>/<group>`.
    pub key: String,
    /// What happened, with the incident as it is now.
    pub event: IncidentEvent,
}

/// A finding's key on its node: check and subject.
type Key = (String, String);
/// A finding anywhere: node, check, subject.
type Member = (String, String, String);
/// A cluster rule (catalog position) and group value.
type Group = (usize, String);

#[derive(Debug, Default)]
struct NodeState {
    silent: bool,
    /// Keys open at the last look, to count openings.
    seen: HashSet<Key>,
    /// When each key recently opened.
    openings: HashMap<Key, Vec<i64>>,
    /// Findings that count, and the incident each belongs to.
    counted: BTreeMap<Key, OpenFinding>,
    assigned: BTreeMap<Key, u64>,
    /// Cluster groups this node's counted findings match, with their earliest first seen.
    groups: BTreeMap<Group, i64>,
}

#[derive(Debug)]
struct Tracked {
    key: String,
    /// The describing rule's position in the catalog; `None` for a check no rule matches.
    rule: Option<usize>,
    /// Node scope: the node.
    node: Option<String>,
    members: BTreeSet<Member>,
    /// As last stored (new: not stored yet).
    incident: Incident,
    new: bool,
    /// When it was last stored (unix ms).
    described_at: i64,
    /// Where members went when they moved to another incident.
    moved_to: Option<u64>,
}

/// The correlation state of the whole cluster.
pub struct Correlator {
    catalog: Arc<Catalog>,
    config: IncidentConfig,
    nodes: HashMap<String, NodeState>,
    silent_count: usize,
    /// Open incidents.
    open: HashMap<u64, Tracked>,
    by_key: HashMap<String, u64>,
    /// Cluster rule groups: node -> earliest first seen of its matching findings.
    cluster: HashMap<Group, BTreeMap<String, i64>>,
    /// Incidents changed since they were last stored, waiting for `UPDATE_EVERY_MS`.
    pending: BTreeSet<u64>,
    /// While restoring: the incident of each stored member.
    restored: HashMap<Member, u64>,
    next_id: u64,
}

impl Correlator {
    /// An empty correlator; incident ids continue above `max_id`.
    pub fn new(catalog: Arc<Catalog>, config: IncidentConfig, max_id: u64) -> Self {
        Correlator {
            catalog,
            config,
            nodes: HashMap::new(),
            silent_count: 0,
            open: HashMap::new(),
            by_key: HashMap::new(),
            cluster: HashMap::new(),
            pending: BTreeSet::new(),
            restored: HashMap::new(),
            next_id: max_id + 1,
        }
    }

    /// Takes back an open incident from the store. Call before [`Correlator::restore_node`].
    pub fn restore_incident(&mut self, key: String, incident: Incident) {
        let members: BTreeSet<Member> = incident
            .findings
            .iter()
            .map(|f| (f.node.clone(), f.check.clone(), f.subject.clone()))
            .collect();
        for m in &members {
            self.restored.insert(m.clone(), incident.id);
        }
        let rule = (!incident.rule.is_empty())
            .then(|| {
                self.catalog
                    .rules()
                    .position(|(r, _)| r.id == incident.rule)
            })
            .flatten();
        let node = (incident.scope() == IncidentScope::Node)
            .then(|| incident.nodes.first().cloned())
            .flatten();
        self.next_id = self.next_id.max(incident.id + 1);
        self.by_key.insert(key.clone(), incident.id);
        self.open.insert(
            incident.id,
            Tracked {
                key,
                rule,
                node,
                members,
                incident,
                new: false,
                described_at: 0,
                moved_to: None,
            },
        );
    }

    /// Takes back a node and its open findings from the store: the findings that belong
    /// to a restored incident count; the others wait for their next report.
    pub fn restore_node(&mut self, node: &str, open: &[OpenFinding]) {
        let mut state = NodeState::default();
        for f in open {
            let key = (f.finding.check.clone(), f.finding.subject.clone());
            state.seen.insert(key.clone());
            state.silent |= f.finding.check == SILENT_CHECK;
            let member = (node.to_owned(), key.0.clone(), key.1.clone());
            if let Some(id) = self.restored.remove(&member) {
                state.counted.insert(key.clone(), f.clone());
                state.assigned.insert(key, id);
            }
        }
        state.groups = self.groups_of(&state.counted);
        for (group, first_seen) in &state.groups {
            self.cluster
                .entry(group.clone())
                .or_default()
                .insert(node.to_owned(), *first_seen);
        }
        self.silent_count += usize::from(state.silent);
        self.nodes.insert(node.to_owned(), state);
    }

    /// A node's open findings as of `now` (unix ms), after a report or when it fell silent:
    /// the incidents this opened, changed or resolved.
    pub fn observe<'a>(
        &mut self,
        node: &str,
        open: impl IntoIterator<Item = &'a OpenFinding>,
        now: i64,
    ) -> Vec<Change> {
        let open: Vec<&OpenFinding> = open.into_iter().collect();
        let state = self.nodes.entry(node.to_owned()).or_default();
        let window_start = now - self.config.repeat_window.as_millis() as i64;
        let mut seen = HashSet::with_capacity(open.len());
        let mut silent = false;
        for f in &open {
            let key = (f.finding.check.clone(), f.finding.subject.clone());
            if !state.seen.contains(&key) {
                state
                    .openings
                    .entry(key.clone())
                    .or_default()
                    .push(f.first_seen);
            }
            silent |= f.finding.check == SILENT_CHECK;
            seen.insert(key);
        }
        state.openings.retain(|_, times| {
            times.retain(|t| *t >= window_start);
            !times.is_empty()
        });
        state.seen = seen;
        if silent != state.silent {
            state.silent = silent;
            if silent {
                self.silent_count += 1;
            } else {
                self.silent_count -= 1;
            }
        }

        // A finding counts once it persisted or repeated; then it keeps counting while it
        // is open and for `hold` after it went away, so one that comes and goes keeps its
        // incident open rather than opening and resolving it again and again.
        let hold = self.config.hold.as_millis() as i64;
        let repeat = self.config.repeat as usize;
        let mut counted: BTreeMap<Key, OpenFinding> = open
            .iter()
            .filter_map(|f| {
                let key = (f.finding.check.clone(), f.finding.subject.clone());
                let counts = f.finding.check == SILENT_CHECK
                    || f.last_seen - f.first_seen >= hold
                    || state.counted.contains_key(&key)
                    || state.openings.get(&key).is_some_and(|o| o.len() >= repeat);
                counts.then(|| (key, (*f).clone()))
            })
            .collect();
        for (key, prev) in &state.counted {
            if !state.seen.contains(key) && now - prev.last_seen < hold {
                counted.insert(key.clone(), prev.clone());
            }
        }

        // Incidents whose findings on this node changed severity or forecast.
        let mut dirty = BTreeSet::new();
        for (key, f) in &counted {
            let (Some(prev), Some(id)) = (state.counted.get(key), state.assigned.get(key)) else {
                continue;
            };
            let forecast = self
                .open
                .get(id)
                .and_then(|t| t.rule)
                .and_then(|r| self.catalog.at(r).forecast.as_deref());
            if prev.id != f.id
                || prev.finding.severity != f.finding.severity
                || forecast.is_some_and(|k| moved(prev.finding.number(k), f.finding.number(k)))
            {
                dirty.insert(*id);
            }
        }
        let same_keys = counted.keys().eq(state.counted.keys());
        let groups = self.groups_of(&counted);
        let state = self.nodes.get_mut(node).expect("inserted above");
        state.counted = counted;
        if same_keys && groups == state.groups && dirty.is_empty() {
            return Vec::new();
        }

        // Cluster groups this node joined or left.
        let old_groups = std::mem::replace(&mut state.groups, groups.clone());
        let mut touched = Vec::new();
        for (group, first_seen) in &groups {
            if old_groups.get(group) != Some(first_seen) {
                self.cluster
                    .entry(group.clone())
                    .or_default()
                    .insert(node.to_owned(), *first_seen);
                touched.push(group.clone());
            }
        }
        for group in old_groups.keys().filter(|g| !groups.contains_key(*g)) {
            if let Some(nodes) = self.cluster.get_mut(group) {
                nodes.remove(node);
                if nodes.is_empty() {
                    self.cluster.remove(group);
                }
            }
        }
        let mut to_assign = vec![node.to_owned()];
        for group in touched {
            let key = cluster_key(&self.catalog, &group);
            if self.by_key.contains_key(&key) || !self.threshold_met(&group) {
                continue;
            }
            self.track(key, Some(group.0), None);
            to_assign.extend(self.cluster[&group].keys().filter(|n| *n != node).cloned());
        }
        for n in to_assign {
            self.assign(&n, &mut dirty);
        }
        self.finish(dirty, now)
    }

    /// The cluster groups that counted findings match, with the earliest first seen.
    fn groups_of(&self, counted: &BTreeMap<Key, OpenFinding>) -> BTreeMap<Group, i64> {
        let mut groups = BTreeMap::new();
        for f in counted.values() {
            for group in self.catalog.cluster_matches(&f.finding) {
                groups
                    .entry(group)
                    .and_modify(|t: &mut i64| *t = (*t).min(f.first_seen))
                    .or_insert(f.first_seen);
            }
        }
        groups
    }

    /// Nodes reporting (known and not silent).
    fn live_nodes(&self) -> usize {
        (self.nodes.len() - self.silent_count).max(1)
    }

    /// Enough nodes of a cluster group for its rule: at least `min_nodes` (default 2) and
    /// `min_share` of the reporting nodes, first seen within `within` of each other.
    fn threshold_met(&self, group: &Group) -> bool {
        let Some(nodes) = self.cluster.get(group) else {
            return false;
        };
        let m = &self.catalog.at(group.0).matcher;
        let count = match m.within {
            None => nodes.len(),
            Some(within) => {
                let mut times: Vec<i64> = nodes.values().copied().collect();
                times.sort_unstable();
                let width = within.as_millis() as i64;
                let mut start = 0;
                let mut best = 0;
                for end in 0..times.len() {
                    while times[end] - times[start] > width {
                        start += 1;
                    }
                    best = best.max(end - start + 1);
                }
                best
            }
        };
        count >= m.min_nodes.unwrap_or(2) as usize
            && m.min_share
                .is_none_or(|share| count as f64 / self.live_nodes() as f64 >= share)
    }

    /// Starts tracking a new incident (stored by [`Correlator::finish`]).
    fn track(&mut self, key: String, rule: Option<usize>, node: Option<String>) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.by_key.insert(key.clone(), id);
        self.open.insert(
            id,
            Tracked {
                key,
                rule,
                node,
                members: BTreeSet::new(),
                incident: Incident {
                    id,
                    ..Default::default()
                },
                new: true,
                described_at: 0,
                moved_to: None,
            },
        );
        id
    }

    /// Puts each counted finding of `node` in its incident, moving it from where it was.
    fn assign(&mut self, node: &str, dirty: &mut BTreeSet<u64>) {
        let Some(state) = self.nodes.get(node) else {
            return;
        };
        let catalog = &self.catalog;
        let checks: Vec<&str> = state.counted.keys().map(|(c, _)| c.as_str()).collect();
        let rules: Vec<(&Key, &OpenFinding, Option<usize>)> = state
            .counted
            .iter()
            .map(|(k, f)| (k, f, catalog.node_rule(&f.finding, &checks)))
            .collect();
        let absorbs = |rule: Option<usize>, check: &str| {
            rule.is_some_and(|r| catalog.at(r).consequences.iter().any(|c| c == check))
        };
        let is_consequence = |check: &str| {
            rules
                .iter()
                .any(|(k, _, r)| k.0 != check && absorbs(*r, check))
        };
        // Each finding's incident key (with its describing rule), consequences following
        // the finding that causes them.
        let mut wanted: Vec<(Key, String, Option<usize>)> = Vec::with_capacity(rules.len());
        for (key, f, rule) in &rules {
            let (cause, rule) = if is_consequence(&key.0) {
                rules
                    .iter()
                    .find(|(k, _, r)| k.0 != key.0 && absorbs(*r, &key.0) && !is_consequence(&k.0))
                    .map_or((*f, *rule), |(_, cf, cr)| (*cf, *cr))
            } else {
                (*f, *rule)
            };
            let incident_key = catalog
                .cluster_matches(&cause.finding)
                .map(|g| cluster_key(catalog, &g))
                .find(|k| self.by_key.contains_key(k));
            let (incident_key, rule) = match incident_key {
                Some(k) => {
                    let r = self.open[&self.by_key[&k]].rule;
                    (k, r)
                }
                None => (node_key(catalog, node, rule, &cause.finding.check), rule),
            };
            wanted.push(((*key).clone(), incident_key, rule));
        }
        let old = state.assigned.clone();

        // New node incidents take over an open one of this node that holds one of their
        // findings and is no longer wanted (the describing rule changed), so a more specific
        // match updates the incident rather than replacing it.
        let wanted_keys: HashSet<&str> = wanted.iter().map(|(_, k, _)| k.as_str()).collect();
        let mut ids: HashMap<String, u64> = HashMap::new();
        for (key, incident_key, rule) in &wanted {
            if ids.contains_key(incident_key) {
                continue;
            }
            let id = match self.by_key.get(incident_key) {
                Some(id) => *id,
                None => {
                    let reusable = old.get(key).copied().filter(|id| {
                        self.open.get(id).is_some_and(|t| {
                            t.node.as_deref() == Some(node) && !wanted_keys.contains(t.key.as_str())
                        })
                    });
                    match reusable {
                        Some(id) => {
                            let t = self.open.get_mut(&id).expect("filtered above");
                            self.by_key.remove(&t.key);
                            t.key = incident_key.clone();
                            t.rule = *rule;
                            self.by_key.insert(incident_key.clone(), id);
                            id
                        }
                        None => self.track(incident_key.clone(), *rule, Some(node.to_owned())),
                    }
                }
            };
            ids.insert(incident_key.clone(), id);
        }

        let mut assigned = BTreeMap::new();
        for (key, incident_key, _) in wanted {
            let id = ids[&incident_key];
            let member = (node.to_owned(), key.0.clone(), key.1.clone());
            if old.get(&key) != Some(&id) {
                if let Some(prev) = old.get(&key).and_then(|p| self.open.get_mut(p)) {
                    prev.members.remove(&member);
                    prev.moved_to = Some(id);
                    dirty.insert(prev.incident.id);
                }
                if let Some(t) = self.open.get_mut(&id) {
                    t.members.insert(member);
                }
                dirty.insert(id);
            }
            assigned.insert(key, id);
        }
        for (key, id) in &old {
            if !assigned.contains_key(key)
                && let Some(t) = self.open.get_mut(id)
            {
                t.members
                    .remove(&(node.to_owned(), key.0.clone(), key.1.clone()));
                dirty.insert(*id);
            }
        }
        if let Some(state) = self.nodes.get_mut(node) {
            state.assigned = assigned;
        }
    }

    /// Stores the changes that waited for `UPDATE_EVERY_MS`; call about once a second.
    pub fn flush(&mut self, now: i64) -> Vec<Change> {
        let pending = std::mem::take(&mut self.pending);
        self.finish(pending, now)
    }

    /// Re-describes the incidents whose findings changed; answers what is to be stored.
    /// Opening and resolving are stored at once; other changes at most every
    /// `UPDATE_EVERY_MS`.
    fn finish(&mut self, dirty: BTreeSet<u64>, now: i64) -> Vec<Change> {
        let mut changes = Vec::with_capacity(dirty.len());
        for id in dirty {
            let Some(t) = self.open.get(&id) else {
                continue;
            };
            if !t.new && !t.members.is_empty() && now - t.described_at < UPDATE_EVERY_MS {
                self.pending.insert(id);
                continue;
            }
            self.pending.remove(&id);
            let live = self.live_nodes();
            let findings: Vec<&OpenFinding> = t
                .members
                .iter()
                .filter_map(|(n, c, s)| self.nodes.get(n)?.counted.get(&(c.clone(), s.clone())))
                .collect();
            let rule = t.rule.map(|r| self.catalog.at(r));
            let mut incident =
                describe::describe(&t.incident, rule, t.node.is_none(), &findings, live, now);
            let Some(t) = self.open.get_mut(&id) else {
                continue;
            };
            let moved_to = t.moved_to.take();
            let kind = if findings.is_empty() {
                incident.state = IncidentState::Resolved as i32;
                incident.resolved_at = Some(timestamp_from_millis(now));
                let text = match moved_to {
                    Some(to) => format!("resolved: its findings moved to incident {to}"),
                    None => "resolved: all its findings resolved".to_owned(),
                };
                push_timeline(&mut incident, now, text);
                Kind::Resolved
            } else if t.new {
                Kind::Opened
            } else if describe::same(&t.incident, &incident) {
                continue;
            } else {
                Kind::Updated
            };
            t.new = false;
            t.described_at = now;
            t.incident = incident.clone();
            let key = t.key.clone();
            if kind == Kind::Resolved {
                self.open.remove(&id);
                self.by_key.remove(&key);
            }
            changes.push(Change {
                key,
                event: IncidentEvent {
                    kind: kind as i32,
                    incident: Some(incident),
                },
            });
        }
        changes
    }
}

/// A forecast number moved enough to update its incident.
fn moved(before: Option<f64>, after: Option<f64>) -> bool {
    match (before, after) {
        (Some(b), Some(a)) => (a - b).abs() > b.abs() * FORECAST_TOLERANCE,
        (None, None) => false,
        _ => true,
    }
}

fn cluster_key(catalog: &Catalog, group: &Group) -> String {
    format!("cluster/{}/{}", catalog.at(group.0).id, group.1)
}

fn node_key(catalog: &Catalog, node: &str, rule: Option<usize>, check: &str) -> String {
    match rule {
        Some(r) => format!("node/{node}/{}", catalog.at(r).id),
        None => format!("node/{node}/check:{check}"),
    }
}

/// Adds a timeline entry, keeping the first and the latest ones.
fn push_timeline(incident: &mut Incident, at: i64, text: String) {
    incident.timeline.push(nodemedic_proto::v1::TimelineEntry {
        at: Some(timestamp_from_millis(at)),
        text,
    });
    if incident.timeline.len() > MAX_TIMELINE {
        incident.timeline.remove(1);
    }
}
