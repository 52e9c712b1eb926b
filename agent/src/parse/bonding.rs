//! `/proc/net/bonding/<bond>`: the bonding driver's view of a bond and its slaves.
//!
//! ```text
//! Bonding Mode: IEEE 802.3ad Dynamic link aggregation
//! MII Status: up
//! ...
//! Slave Interface: enp1s0f0
//! MII Status: down
//! Link Failure Count: 2
//! ```
//! `Key: value` lines; the ones before the first `Slave Interface:` are the bond's, each
//! `Slave Interface:` starts a slave. Keys this module does not use (LACP details, indented
//! aggregator info) are skipped, so every driver version's file reads.

use super::ParseError;

/// A bond and its slaves.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bond {
    /// `Bonding Mode:` (`fault-tolerance (active-backup)`, `IEEE 802.3ad ...`).
    pub mode: String,
    /// The bond's own `MII Status:` (`up`, `down`).
    pub mii_status: String,
    /// `Currently Active Slave:` (active-backup only).
    pub active_slave: Option<String>,
    /// Its slaves in the file's order.
    pub slaves: Vec<Slave>,
}

/// One slave of a bond.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Slave {
    /// The interface.
    pub name: String,
    /// `MII Status:` (`up`, `down`, `going back`, ...).
    pub mii_status: String,
    /// `Link Failure Count:` since the slave joined.
    pub link_failures: u64,
}

/// Parses one bond's file.
pub fn parse(text: &str) -> Result<Bond, ParseError> {
    let mut bond = Bond::default();
    for (i, line) in text.lines().enumerate() {
        // Indented lines belong to a block (aggregator info, LACP PDUs) this module skips.
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match (key, bond.slaves.last_mut()) {
            ("Slave Interface", _) => bond.slaves.push(Slave {
                name: value.to_owned(),
                ..Default::default()
            }),
            ("Bonding Mode", None) => bond.mode = value.to_owned(),
            ("MII Status", None) => bond.mii_status = value.to_owned(),
            ("Currently Active Slave", None) => bond.active_slave = Some(value.to_owned()),
            ("MII Status", Some(slave)) => slave.mii_status = value.to_owned(),
            ("Link Failure Count", Some(slave)) => {
                slave.link_failures = value.parse().map_err(|_| {
                    ParseError::new(
                        i + 1,
                        format!("Link Failure Count is not a number: {value:?}"),
                    )
                })?;
            }
            _ => {}
        }
    }
    if bond.mii_status.is_empty() {
        return Err(ParseError::new(
            1,
            "no \"MII Status:\" line for the bond: not a bonding driver's file",
        ));
    }
    Ok(bond)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fixture;

    #[test]
    fn a_real_lacp_bond_with_a_slave_down() {
        let bond = parse(&fixture("net/bonding-8023ad-slave-down")).unwrap();
        assert_eq!(bond.mode, "IEEE 802.3ad Dynamic link aggregation");
        assert_eq!(bond.mii_status, "up");
        assert_eq!(
            bond.slaves,
            [
                Slave {
                    name: "enp1s0f0".into(),
                    mii_status: "down".into(),
                    link_failures: 2
                },
                Slave {
                    name: "enp1s0f1".into(),
                    mii_status: "up".into(),
                    link_failures: 2
                },
            ]
        );
    }

    #[test]
    fn active_backup_names_its_active_slave() {
        let bond = parse(
            "Ethernet Channel Bonding Driver: v5.15.0\n\nBonding Mode: fault-tolerance (active-backup)\nPrimary Slave: None\nCurrently Active Slave: eth2\nMII Status: up\n\nSlave Interface: eth2\nMII Status: up\nLink Failure Count: 0\n",
        )
        .unwrap();
        assert_eq!(bond.active_slave.as_deref(), Some("eth2"));
        assert_eq!(bond.slaves.len(), 1);
    }

    #[test]
    fn other_files_are_refused() {
        assert!(parse("").is_err());
        assert!(parse("Inter-|   Receive\n").is_err());
        let e =
            parse("MII Status: up\nSlave Interface: eth0\nLink Failure Count: many\n").unwrap_err();
        assert_eq!(e.line, 3);
    }
}
