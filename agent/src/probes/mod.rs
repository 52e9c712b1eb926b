//! The probes, one module each, and what a probe is: the [`Probe`] trait, what a run gets
//! ([`ProbeContext`]) and gives ([`ProbeOutput`]: a [`Section`] of the report and its
//! findings), and why it can fail ([`ProbeError`]). [`set::ProbeSet`] runs them together.
//!
//! A probe measures one part of the node (its section of the report) and judges what it
//! measured against its own settings, which it gets when it is made (each probe's module
//! defines them: `disk::DiskThresholds`, `dns::DnsConfig`, ...). It runs on a blocking
//! thread, because the kernel can make a read hang (`statvfs` on a dead NFS server); a
//! probe that fails or misses its deadline yields a `probe.failed` finding with status
//! unknown, and the other probes' results still go out.
//!
//! To add one: implement [`Probe`] in a new module here with its settings beside it, give
//! it a section in `proto/nodemedic/v1/report.proto` and a [`Section`] variant, add its
//! settings to `config::Config` and the probe to `agent::default_probes`. Probes never
//! import each other: what several share lives outside `probes/` (`runtime`,
//! `kubernetes`, `forecast`, `units`).

pub mod certs;
pub mod cgroups;
pub mod clock;
pub mod disk;
pub mod dns;
pub mod images;
pub mod inotify;
pub mod journal;
pub mod kernel;
pub mod memory;
pub mod net;
pub mod pods;
pub mod services;
pub mod set;
pub mod system;

use std::time::{Duration, SystemTime};

use nodemedic_proto::v1::{
    CertsSection, CgroupsSection, ClockSection, DiskSection, DnsSection, ImagesSection,
    InotifySection, JournalSection, KernelSection, MemorySection, NetSection, NodeReport,
    PodsSection, ServicesSection, SystemSection,
};

use crate::host::{HostError, HostRoot};

/// Why a probe could not measure.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// A host file could not be read or did not hold what the kernel writes there.
    #[error(transparent)]
    Host(#[from] HostError),
    /// The probe could not start the async runtime its client libraries need.
    #[error("cannot start an async runtime: {0}")]
    Runtime(std::io::Error),
    /// The Kubernetes API did not answer as needed.
    #[error("Kubernetes API: {0}")]
    Kubernetes(String),
    /// The probe missed its deadline.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The previous run of the probe is still stuck in the kernel.
    #[error("the previous run has not finished yet (stuck in a system call?)")]
    StillRunning,
    /// The probe's thread panicked: a bug.
    #[error("the probe panicked: {0}")]
    Panicked(String),
}

/// What a probe gets to work with on each run; its settings it got when it was made.
#[derive(Debug, Clone)]
pub struct ProbeContext {
    /// Where the node's `/` is.
    pub host: HostRoot,
    /// The time of this collection; tests set it to drive forecasts.
    pub now: SystemTime,
}

/// A probe's section of the report.
#[derive(Debug, Clone, PartialEq)]
pub enum Section {
    /// Filesystems.
    Disk(DiskSection),
    /// Memory.
    Memory(MemorySection),
    /// Kernel limits.
    System(SystemSection),
    /// Resolver configuration and live DNS probes.
    Dns(Box<DnsSection>),
    /// Container image caches.
    Images(ImagesSection),
    /// What the kernel log said.
    Kernel(KernelSection),
    /// What the Kubernetes API says about the node and its pods.
    Pods(PodsSection),
    /// The pods' memory and ephemeral storage from their cgroups and directories.
    Cgroups(CgroupsSection),
    /// The clock's discipline.
    Clock(ClockSection),
    /// inotify use per user.
    Inotify(InotifySection),
    /// The network interfaces.
    Net(NetSection),
    /// The kubelet's and the runtimes' own health.
    Services(ServicesSection),
    /// The node's certificates.
    Certs(CertsSection),
    /// What the systemd journal said.
    Journal(JournalSection),
}

impl Section {
    /// Puts the section in its place in `report`.
    pub(crate) fn store(self, report: &mut NodeReport) {
        match self {
            Section::Disk(s) => report.disk = Some(s),
            Section::Memory(s) => report.memory = Some(s),
            Section::System(s) => report.system = Some(s),
            Section::Dns(s) => report.dns = Some(*s),
            Section::Images(s) => report.images = Some(s),
            Section::Kernel(s) => report.kernel = Some(s),
            Section::Pods(s) => report.pods = Some(s),
            Section::Cgroups(s) => report.cgroups = Some(s),
            Section::Clock(s) => report.clock = Some(s),
            Section::Inotify(s) => report.inotify = Some(s),
            Section::Net(s) => report.net = Some(s),
            Section::Services(s) => report.services = Some(s),
            Section::Certs(s) => report.certs = Some(s),
            Section::Journal(s) => report.journal = Some(s),
        }
    }
}

/// What one run of a probe produced.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeOutput {
    /// The measurements.
    pub section: Section,
    /// What is wrong according to them.
    pub findings: Vec<nodemedic_proto::v1::Finding>,
}

/// One part of the node to measure. Implementations keep whatever state they need across
/// runs (samples for a forecast, a counter's last value) behind their own lock.
pub trait Probe: Send + Sync + 'static {
    /// Stable id and the prefix of the checks it emits: `disk` emits `disk.space`, ...
    fn id(&self) -> &'static str;

    /// Measures and judges. Blocking I/O is fine: this runs on a blocking thread.
    fn run(&self, ctx: &ProbeContext) -> Result<ProbeOutput, ProbeError>;

    /// The checks it emits, when they do not all start with `<id>.` (the collector keeps
    /// their findings open while the probe fails). Empty: every `<id>.*` check.
    fn checks(&self) -> &'static [&'static str] {
        &[]
    }
}
