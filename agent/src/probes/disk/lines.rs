//! The lines filesystems are judged against in one run: the kubelet's own, from its config
//! file (its defaults for what the file does not set), or the agent's thresholds when the
//! node has no kubelet config. Each finding names the line it crossed and its source.

use super::config::DiskThresholds;
use crate::kubelet::{Amount, KubeletConfig, Line};

/// The eviction and image GC lines of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct EvictionLines {
    /// `nodefs.available` hard; `None` when the kubelet does not evict on it.
    pub nodefs: Option<Line>,
    /// `nodefs.available` soft, when set.
    pub nodefs_soft: Option<Line>,
    /// `imagefs.available` hard.
    pub imagefs: Option<Line>,
    /// `imagefs.available` soft, when set.
    pub imagefs_soft: Option<Line>,
    /// `nodefs.inodesFree` hard.
    pub nodefs_inodes: Option<Line>,
    /// `imagefs.inodesFree` hard.
    pub imagefs_inodes: Option<Line>,
    /// Image GC starts above this share used.
    pub image_gc: Line,
}

impl EvictionLines {
    /// The kubelet's lines from `kubelet` (its config file), else the agent's `t`.
    pub fn new(kubelet: Option<&KubeletConfig>, t: &DiskThresholds) -> Self {
        let Some(k) = kubelet else {
            let own = |signal, p: crate::units::Percent| {
                Some(Line::nodemedic(signal, Amount::Percent(p.get())))
            };
            return EvictionLines {
                nodefs: own("nodefs.available", t.nodefs_critical_available),
                nodefs_soft: None,
                imagefs: own("imagefs.available", t.imagefs_critical_available),
                imagefs_soft: None,
                nodefs_inodes: own("nodefs.inodesFree", t.inodes_critical_free),
                imagefs_inodes: own("imagefs.inodesFree", t.inodes_critical_free),
                image_gc: Line::nodemedic("imagefs.used", Amount::Percent(t.imagefs_gc_used.get())),
            };
        };
        EvictionLines {
            nodefs: k.hard_eviction("nodefs.available"),
            nodefs_soft: k.soft_eviction("nodefs.available"),
            imagefs: k.hard_eviction("imagefs.available"),
            imagefs_soft: k.soft_eviction("imagefs.available"),
            nodefs_inodes: k.hard_eviction("nodefs.inodesFree"),
            imagefs_inodes: k.hard_eviction("imagefs.inodesFree"),
            image_gc: k.image_gc_high(),
        }
    }
}

impl Default for EvictionLines {
    fn default() -> Self {
        EvictionLines::new(None, &DiskThresholds::default())
    }
}
