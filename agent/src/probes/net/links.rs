//! Reading the node's interfaces: `/sys/class/net/<name>` (state, carrier, flags, whether a
//! device backs it), `/proc/net/dev` (counters), the default routes and the bonds.

use std::collections::BTreeSet;

use nodemedic_proto::v1::{NetBond, NetBondSlave, NetInterface};
use procfs_core::net::InterfaceDeviceStatus;

use crate::{
    host::{HostError, HostRoot},
    parse::bonding,
};

/// `IFF_UP` in `/sys/class/net/<name>/flags`.
const IFF_UP: u64 = 0x1;

/// The interfaces the IPv4 and IPv6 default routes leave by.
pub fn default_route_interfaces(host: &HostRoot) -> Result<BTreeSet<String>, HostError> {
    let mut out = BTreeSet::new();
    // Iface Destination Gateway Flags RefCnt Use Metric Mask ...; a header line first.
    if let Some(text) = host.read_if_present("/proc/net/route")? {
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() >= 8 && f[1] == "00000000" && f[7] == "00000000" {
                out.insert(f[0].to_owned());
            }
        }
    }
    // dest prefix_len src src_len next_hop metric refcnt use flags iface; no header. `lo`
    // carries the kernel's unreachable default entries.
    if let Some(text) = host.read_if_present("/proc/net/ipv6_route")? {
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() >= 10 && f[0].bytes().all(|b| b == b'0') && f[1] == "00" && f[9] != "lo" {
                out.insert(f[9].to_owned());
            }
        }
    }
    Ok(out)
}

/// Every interface's counters, by name.
pub fn counters(host: &HostRoot) -> Result<InterfaceDeviceStatus, HostError> {
    host.parse::<InterfaceDeviceStatus>("/proc/net/dev")
}

/// The names under `/sys/class/net`, sorted.
pub fn names(host: &HostRoot) -> Result<Vec<String>, HostError> {
    let dir = host.path("/sys/class/net");
    let entries = std::fs::read_dir(&dir).map_err(|source| HostError::Io {
        path: dir.clone(),
        source,
    })?;
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .collect();
    names.sort();
    Ok(names)
}

/// Whether a device (PCI, USB, a virtio or Xen NIC) backs the interface.
pub fn is_physical(host: &HostRoot, name: &str) -> bool {
    host.path(&format!("/sys/class/net/{name}/device")).exists()
}

/// Whether the bonding driver has a file for the interface.
pub fn is_bond(host: &HostRoot, name: &str) -> bool {
    host.path(&format!("/proc/net/bonding/{name}")).is_file()
}

/// One interface's state and counters (`physical`: [`is_physical`]). An interface that
/// went away while being read has no state files: `None`.
pub fn interface(
    host: &HostRoot,
    name: &str,
    physical: bool,
    stats: &InterfaceDeviceStatus,
    default_routes: &BTreeSet<String>,
) -> Result<Option<NetInterface>, HostError> {
    let base = format!("/sys/class/net/{name}");
    let Some(operstate) = host.read_if_present(&format!("{base}/operstate"))? else {
        return Ok(None);
    };
    let flags = host
        .read_if_present(&format!("{base}/flags"))?
        .and_then(|f| u64::from_str_radix(f.trim().trim_start_matches("0x"), 16).ok())
        .unwrap_or(0);
    // Reading `carrier` of an interface that is down fails with EINVAL: no answer, which
    // is not "no carrier".
    let carrier = std::fs::read_to_string(host.path(&format!("{base}/carrier")))
        .ok()
        .map(|c| c.trim() == "1");
    let s = stats.0.get(name);
    Ok(Some(NetInterface {
        name: name.to_owned(),
        operstate: operstate.trim().to_owned(),
        carrier,
        admin_up: flags & IFF_UP != 0,
        physical,
        default_route: default_routes.contains(name),
        rx_packets: s.map_or(0, |s| s.recv_packets),
        rx_errors: s.map_or(0, |s| s.recv_errs),
        rx_dropped: s.map_or(0, |s| s.recv_drop),
        tx_packets: s.map_or(0, |s| s.sent_packets),
        tx_errors: s.map_or(0, |s| s.sent_errs),
        tx_dropped: s.map_or(0, |s| s.sent_drop),
        ..Default::default()
    }))
}

/// The bonding driver's view of bond `name`.
pub fn bond(host: &HostRoot, name: &str) -> Result<NetBond, HostError> {
    let path = format!("/proc/net/bonding/{name}");
    let b = bonding::parse(&host.read(&path)?).map_err(|e| host.parse_error(&path, e))?;
    Ok(NetBond {
        name: name.to_owned(),
        mode: b.mode,
        mii_status: b.mii_status,
        slaves: b
            .slaves
            .into_iter()
            .map(|s| NetBondSlave {
                name: s.name,
                mii_status: s.mii_status,
                link_failures: s.link_failures,
            })
            .collect(),
    })
}
