//! The probes, one module each. To add one: implement [`crate::probe::Probe`] in a new
//! module here, give it a section in `proto/nodemedic/v1/report.proto`, and list it in
//! [`default_probes`].

use std::sync::Arc;

use crate::{config::Config, probe::Probe};

pub mod cgroups;
pub mod disk;
pub mod dns;
pub mod images;
pub mod kernel;
pub mod memory;
pub mod pods;
pub mod system;

/// The probes the agent and `nodemedic doctor` run; `kube` is where the Kubernetes view
/// appears if the agent connects to the API later (the cgroups probe names pods from it).
pub fn default_probes(config: &Config, kube: &cgroups::names::KubeSlot) -> Vec<Arc<dyn Probe>> {
    let mut probes: Vec<Arc<dyn Probe>> = vec![
        Arc::new(disk::DiskProbe::default()),
        Arc::new(memory::MemoryProbe::default()),
        Arc::new(system::SystemProbe),
        Arc::new(dns::DnsProbe::new(config.dns.clone())),
        Arc::new(images::ImagesProbe::new(config.images.clone())),
    ];
    if config.cgroups.enabled {
        probes.push(Arc::new(cgroups::CgroupsProbe::new(
            config.cgroups.clone(),
            config.images.clone(),
            Arc::clone(kube),
        )));
    }
    if config.kernel.enabled {
        probes.push(Arc::new(kernel::KernelProbe::new(config.kernel.clone())));
    }
    probes
}

/// `part` as a percentage of `whole`; 0 when `whole` is 0.
pub(crate) fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}
