//! One node's probes, run together into a [`NodeReport`]: the agent's loop and
//! `nodemedic doctor` both collect through an [`Agent`].

use std::{sync::Arc, time::SystemTime};

use nodemedic_proto::{time::timestamp, v1::NodeReport};

use crate::{
    config::Config,
    host::HostRoot,
    kubernetes::{self, view::KubeSlot},
    logs::rules::{KERNEL, RuleSet},
    probes::{
        Probe, ProbeContext, certs::CertsProbe, cgroups::CgroupsProbe, clock::ClockProbe,
        disk::DiskProbe, dns::DnsProbe, images::ImagesProbe, inotify::InotifyProbe,
        journal::JournalProbe, kernel::KernelProbe, memory::MemoryProbe, net::NetProbe,
        pods::PodsProbe, services::ServicesProbe, set::ProbeSet, system::SystemProbe,
    },
    publish::Publisher,
};

/// The agent's version, sent in every Hello and report.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The hostname is not valid UTF-8, so it cannot be a node name.
#[derive(Debug, thiserror::Error)]
#[error("the hostname is not UTF-8; pass --node-name")]
pub struct HostnameNotUtf8;

/// The name this node reports as: `explicit` when given and not empty, else the hostname.
pub fn node_name(explicit: Option<String>) -> Result<String, HostnameNotUtf8> {
    match explicit {
        Some(name) if !name.is_empty() => Ok(name),
        _ => rustix::system::uname()
            .nodename()
            .to_str()
            .map(str::to_owned)
            .map_err(|_| HostnameNotUtf8),
    }
}

/// The probes the agent and `nodemedic doctor` run, each made with its part of `config`;
/// `kube` is where the Kubernetes view appears if the agent connects to the API later (the
/// cgroups probe names pods from it).
pub fn default_probes(config: &Config, kube: &KubeSlot) -> Vec<Arc<dyn Probe>> {
    let t = &config.thresholds;
    let mut probes: Vec<Arc<dyn Probe>> = vec![
        Arc::new(DiskProbe::new(t.disk.clone(), Arc::clone(kube))),
        Arc::new(MemoryProbe::new(t.memory.clone())),
        Arc::new(SystemProbe::new(t.system.clone())),
        Arc::new(ClockProbe::new(t.clock.clone())),
        Arc::new(DnsProbe::new(config.dns.clone())),
        Arc::new(ImagesProbe::new(config.images.clone(), t.disk.fill_fit())),
    ];
    // A probe turned off is not run at all: it measures nothing, so none of its checks
    // (or node conditions) counts as measured.
    if config.inotify.enabled {
        probes.push(Arc::new(InotifyProbe::new(config.inotify.clone())));
    }
    if config.net.enabled {
        probes.push(Arc::new(NetProbe::new(config.net.clone())));
    }
    if config.certs.enabled {
        probes.push(Arc::new(CertsProbe::new(config.certs.clone())));
    }
    if config.services.enabled {
        probes.push(Arc::new(ServicesProbe::new(
            config.services.clone(),
            config.images.sockets(),
        )));
    }
    if config.cgroups.enabled {
        probes.push(Arc::new(CgroupsProbe::new(
            config.cgroups.clone(),
            config.images.sockets(),
            config.images.timeout,
            t.disk.nodefs_warn_available,
            Arc::clone(kube),
        )));
    }
    if config.kernel.enabled {
        probes.push(Arc::new(KernelProbe::new(config.kernel.clone())));
    }
    if config.journal.enabled {
        probes.push(Arc::new(JournalProbe::new(config.journal.clone())));
    }
    probes
}

/// Runs the probes of one node; holds their state (samples, counters) between runs.
pub struct Agent {
    node: String,
    host: HostRoot,
    probes: ProbeSet,
    kube: KubeSlot,
    /// The client, once connected (for [`Agent::publish`]).
    client: Option<kube::Client>,
    publisher: Option<Arc<Publisher>>,
    /// The task writing for the publisher; stopped with the agent.
    writer: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(writer) = &self.writer {
            writer.abort();
        }
    }
}

impl Agent {
    /// The default probes on `host`, reporting as `node`.
    pub fn new(node: String, host: HostRoot, config: &Config) -> Self {
        let kube = KubeSlot::default();
        let probes = ProbeSet::new(default_probes(config, &kube), config.probe_timeout);
        Agent {
            node,
            host,
            probes,
            kube,
            client: None,
            publisher: None,
            writer: None,
        }
    }

    /// Adds the pods probe when a Kubernetes client can be made (from `kubeconfig`, or
    /// in-cluster in a pod); without one the agent stays node-only.
    pub async fn with_kubernetes(
        mut self,
        kubeconfig: Option<&std::path::Path>,
        config: &crate::probes::pods::config::KubernetesConfig,
    ) -> Result<Self, kubernetes::watch::ConnectError> {
        let Some((view, client)) =
            kubernetes::watch::connect(kubeconfig, &self.node, &config.watch_options()).await?
        else {
            return Ok(self);
        };
        // The wait for the first lists must end before the probe's deadline.
        let config = crate::probes::pods::config::KubernetesConfig {
            sync_timeout: config.sync_timeout.min(self.probes.timeout() * 3 / 4),
            ..config.clone()
        };
        // The cgroups probe names pods from the same view.
        let _ = self.kube.set(Arc::clone(&view));
        self.probes.add(Arc::new(PodsProbe::new(view, config)));
        self.client = Some(client);
        Ok(self)
    }

    /// Starts writing this node's conditions and Events from every report (the agent does;
    /// `nodemedic doctor` does not), with `writer` when given (another identity, e.g. the
    /// kubelet's), else the watches' client. `None`, and nothing written, without a
    /// Kubernetes client or with both turned off in `config`.
    pub fn publish(
        &mut self,
        config: &Config,
        writer: Option<kube::Client>,
    ) -> Option<Arc<Publisher>> {
        let p = &config.publish;
        if !(p.conditions || p.events) {
            return None;
        }
        let (client, view) = (writer.or_else(|| self.client.clone())?, self.kube.get()?);
        // The files were loaded once already (by the config's check): they load.
        let rule_conditions = match (
            config.kernel.enabled,
            RuleSet::load(KERNEL, &config.kernel.rule_files),
        ) {
            (true, Ok(rules)) => rules.conditions().to_vec(),
            _ => vec![],
        };
        // A probe turned off measures nothing: its conditions are not published.
        let probes: Vec<String> = self
            .capabilities()
            .into_iter()
            .filter(|p| match p.as_str() {
                "dns" => config.dns.enabled,
                "images" => config.images.enabled,
                _ => true,
            })
            .collect();
        let publisher = Arc::new(Publisher::new(
            &self.node,
            &probes,
            &rule_conditions,
            p.clone(),
            Arc::clone(view),
        ));
        self.writer = Some(crate::publish::kube::spawn(client, Arc::clone(&publisher)));
        self.publisher = Some(Arc::clone(&publisher));
        Some(publisher)
    }

    /// The host tree it measures.
    pub fn host(&self) -> &HostRoot {
        &self.host
    }

    /// The node this agent reports as.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The probe ids, for the Hello.
    pub fn capabilities(&self) -> Vec<String> {
        self.probes.ids()
    }

    /// Collects a report now; its `seq` is left for the sender to set.
    pub async fn collect(&self) -> NodeReport {
        let now = SystemTime::now();
        let ctx = ProbeContext {
            host: self.host.clone(),
            now,
        };
        let mut report = NodeReport {
            node: self.node.clone(),
            agent_version: AGENT_VERSION.to_owned(),
            collected_at: Some(timestamp(now)),
            ..Default::default()
        };
        self.probes.collect(&ctx, &mut report).await;
        // Whatever the node holds (a mount point named with a line break, a long error, a
        // process named with escape codes), the report stays one the collector accepts.
        nodemedic_proto::limits::fit_report(&mut report);
        nodemedic_proto::values::fit(&mut report, now);
        if let Some(publisher) = &self.publisher {
            publisher.observe(&report);
        }
        report
    }
}
