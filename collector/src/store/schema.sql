-- nodemedic collector store, schema version 3 (2 added incidents, 3 reports stored by their
-- changes; older stores are upgraded in place, see open_for_writing).
CREATE TABLE IF NOT EXISTS nodes (
    name             TEXT PRIMARY KEY,
    first_seen       INTEGER NOT NULL,          -- unix ms
    last_report      INTEGER,                   -- unix ms the latest report was received
    last_seq         INTEGER NOT NULL DEFAULT 0,
    agent_version    TEXT NOT NULL DEFAULT '',
    interval_ms      INTEGER NOT NULL DEFAULT 10000,
    latest_report_id INTEGER
) STRICT;

CREATE TABLE IF NOT EXISTS reports (
    id           INTEGER PRIMARY KEY,
    node         TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    collected_at INTEGER NOT NULL,
    received_at  INTEGER NOT NULL,
    base_id      INTEGER,                       -- NULL: body is the protobuf NodeReport, a base;
                                                -- else a zstd frame with that base as dictionary
    body         BLOB NOT NULL,
    UNIQUE (node, seq)
) STRICT;
CREATE INDEX IF NOT EXISTS reports_received ON reports (received_at);

CREATE TABLE IF NOT EXISTS findings (
    id          INTEGER PRIMARY KEY,
    node        TEXT NOT NULL,
    check_id    TEXT NOT NULL,
    subject     TEXT NOT NULL,
    severity    INTEGER NOT NULL,
    first_seen  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    resolved_at INTEGER,                        -- NULL while open
    body        BLOB NOT NULL                   -- protobuf Finding as last reported
) STRICT;
CREATE UNIQUE INDEX IF NOT EXISTS findings_open ON findings (node, check_id, subject) WHERE resolved_at IS NULL;
CREATE INDEX IF NOT EXISTS findings_last_seen ON findings (last_seen);
CREATE INDEX IF NOT EXISTS findings_node ON findings (node, last_seen);

-- Incidents: findings correlated by the runbook rules (collector/src/incidents).
CREATE TABLE IF NOT EXISTS incidents (
    id          INTEGER PRIMARY KEY,
    key         TEXT NOT NULL,                  -- correlation key, unique while open
    severity    INTEGER NOT NULL,
    first_seen  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    resolved_at INTEGER,                        -- NULL while open
    body        BLOB NOT NULL                   -- protobuf Incident
) STRICT;
CREATE UNIQUE INDEX IF NOT EXISTS incidents_open ON incidents (key) WHERE resolved_at IS NULL;
CREATE INDEX IF NOT EXISTS incidents_updated ON incidents (updated_at);

-- The nodes each incident affects, for "incidents on node X".
CREATE TABLE IF NOT EXISTS incident_nodes (
    incident_id INTEGER NOT NULL,
    node        TEXT NOT NULL,
    PRIMARY KEY (incident_id, node)
) STRICT, WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS incident_nodes_node ON incident_nodes (node);

-- Remediation applies, as an audit log (who, when, what, result); not subject to retention.
CREATE TABLE IF NOT EXISTS remediations (
    id           INTEGER PRIMARY KEY,
    node         TEXT NOT NULL,
    requested_at INTEGER NOT NULL,
    body         BLOB NOT NULL                  -- protobuf RemediationRecord
) STRICT;
CREATE INDEX IF NOT EXISTS remediations_node ON remediations (node, id);

PRAGMA user_version = 3;
