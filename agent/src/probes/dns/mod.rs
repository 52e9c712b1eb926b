//! The DNS probe: resolver configuration (no network) and live queries to the cluster's
//! DNS from the node, the way pods experience it.
//!
//! Each cycle asks every nameserver for every target over UDP (TCP every `tcp_every`
//! cycles), and every `search_every` cycles resolves a short name through the search list
//! to measure what it costs. Queries run `concurrency` at a time, each with a deadline;
//! at most `max_queries` a cycle. Outcomes go into a rolling window per nameserver, name
//! and protocol, from which the findings come.

pub mod client;
pub mod config;
mod window;

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use hickory_proto::op::ResponseCode;
use nodemedic_proto::checks;
use nodemedic_proto::v1::{
    DnsSearchLookup, DnsSection, Evidence, Finding, ResolvConf as ResolvConfSummary, Severity,
};
use tracing::debug;

use self::{
    client::{Outcome, Protocol, query},
    config::DnsConfig,
    window::Window,
};
use super::{Probe, ProbeContext, ProbeError, ProbeOutput, Section};
use crate::{
    host::HostRoot,
    kubelet::KubeletConfig,
    parse::resolv_conf::{self, MAX_NAMESERVERS, MAX_SEARCH_CHARS, MAX_SEARCH_DOMAINS, ResolvConf},
};

/// Where container runtimes keep the resolv.conf they give pods (newest one wins).
const POD_RESOLV_DIRS: &[&str] = &[
    "/var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes",
    "/run/containerd/io.containerd.grpc.v1.cri/sandboxes",
    "/var/lib/docker/containers",
];
/// How often (cycles) the newest pod resolv.conf is looked for again.
const POD_RESOLV_REFRESH: u64 = 10;
/// The short name resolved through the search list.
const SEARCH_NAME: &str = "kubernetes.default";
/// An external name with two dots, for the amplification estimate.
const EXTERNAL_EXAMPLE: &str = "api.example.com";

/// `ip` or `ip:port`, with `default_port` when none is given.
pub fn nameserver_addr(s: &str, default_port: u16) -> Option<SocketAddr> {
    s.parse::<SocketAddr>().ok().or_else(|| {
        s.parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, default_port))
    })
}

type Key = (SocketAddr, String, Protocol);

/// The DNS probe; keeps the rolling windows between cycles.
#[derive(Debug)]
pub struct DnsProbe {
    config: DnsConfig,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    cycle: u64,
    windows: HashMap<Key, Window>,
    pod_resolv: Option<String>,
}

impl DnsProbe {
    /// A probe asking what `config` says.
    pub fn new(config: DnsConfig) -> Self {
        DnsProbe {
            config,
            state: Mutex::default(),
        }
    }
}

/// The newest `resolv.conf` the container runtime wrote for a pod sandbox.
fn newest_pod_resolv(host: &HostRoot) -> Option<String> {
    POD_RESOLV_DIRS
        .iter()
        .filter_map(|dir| {
            std::fs::read_dir(host.path(dir))
                .ok()
                .map(|entries| (dir, entries))
        })
        .flat_map(|(dir, entries)| {
            entries.filter_map(Result::ok).filter_map(move |e| {
                let name = e.file_name().into_string().ok()?;
                let host_path = format!("{dir}/{name}/resolv.conf");
                let modified = std::fs::metadata(host.path(&host_path))
                    .ok()?
                    .modified()
                    .ok()?;
                Some((modified, host_path))
            })
        })
        .max()
        .map(|(_, path)| path)
}

fn summary(path: &str, c: &ResolvConf) -> ResolvConfSummary {
    ResolvConfSummary {
        path: path.to_owned(),
        nameservers: c.nameservers.iter().map(ToString::to_string).collect(),
        search: c.search.clone(),
        ndots: u32::from(c.ndots),
        timeout_seconds: u32::from(c.timeout),
        attempts: u32::from(c.attempts),
        rotate: c.rotate,
        single_request: c.single_request,
        single_request_reopen: c.single_request_reopen,
        use_vc: c.use_vc,
        queries_per_external_lookup: c.queries_for_external(EXTERNAL_EXAMPLE, false) as u32,
        queries_per_external_lookup_with_aaaa: c.queries_for_external(EXTERNAL_EXAMPLE, true)
            as u32,
    }
}

/// What a resolver silently ignores or gets wrong in a resolv.conf; `pod` for a pod's.
pub fn config_finding(path: &str, c: &ResolvConf, pod: bool) -> Option<Finding> {
    let mut problems: Vec<(Severity, String)> = Vec::new();
    if c.nameservers.len() > MAX_NAMESERVERS {
        let ignored: Vec<String> = c.nameservers[MAX_NAMESERVERS..]
            .iter()
            .map(ToString::to_string)
            .collect();
        problems.push((
            Severity::Warning,
            format!(
                "{} nameservers: resolvers use the first {MAX_NAMESERVERS} and ignore {}",
                c.nameservers.len(),
                ignored.join(", ")
            ),
        ));
    }
    if !c.invalid_nameservers.is_empty() {
        problems.push((
            Severity::Warning,
            format!(
                "nameserver lines that are not IP addresses are ignored: {}",
                c.invalid_nameservers.join(", ")
            ),
        ));
    }
    if c.search.len() > MAX_SEARCH_DOMAINS || c.search_chars() > MAX_SEARCH_CHARS {
        problems.push((Severity::Warning, format!(
            "{} search domains ({} characters): musl and glibc before 2.26 use only the first {MAX_SEARCH_DOMAINS} domains and {MAX_SEARCH_CHARS} characters",
            c.search.len(), c.search_chars()
        )));
    }
    if pod && let Some(lo) = c.nameservers.iter().find(|ip| ip.is_loopback()) {
        problems.push((Severity::Critical, format!("nameserver {lo} is loopback: inside a pod that is the pod itself, so lookups fail (the kubelet's --resolv-conf should point at the real upstream resolv.conf)")));
    }
    let amplification = c.queries_for_external(EXTERNAL_EXAMPLE, true);
    if amplification >= 8 {
        problems.push((Severity::Info, format!(
            "ndots:{} with {} search domains makes one lookup of an external name like {EXTERNAL_EXAMPLE} cost {amplification} queries (A and AAAA); a trailing dot or a lower ndots in the pod's dnsConfig avoids it",
            c.ndots, c.search.len()
        )));
    }
    let severity = problems.iter().map(|(s, _)| *s).max()?;
    let text: Vec<String> = problems.into_iter().map(|(_, t)| t).collect();
    Some(
        Finding::fail(
            checks::DNS_CONFIG,
            severity,
            path,
            format!("{path}: {}.", text.join("; ")),
        )
        .with(Evidence::count("nameservers", c.nameservers.len() as u64))
        .with(Evidence::count("search_domains", c.search.len() as u64))
        .with(Evidence::count("ndots", u64::from(c.ndots)))
        .with(Evidence::count(
            "queries_per_external_lookup",
            amplification as u64,
        )),
    )
}

impl Probe for DnsProbe {
    fn id(&self) -> &'static str {
        "dns"
    }

    fn run(&self, ctx: &ProbeContext) -> Result<ProbeOutput, ProbeError> {
        let started = Instant::now();
        let cfg = &self.config;
        let host = &ctx.host;
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.cycle += 1;
        let cycle = state.cycle;

        let node = host
            .read_if_present("/etc/resolv.conf")?
            .map(|t| resolv_conf::parse(&t));
        if state.pod_resolv.is_none() || cycle % POD_RESOLV_REFRESH == 1 {
            state.pod_resolv = newest_pod_resolv(host);
        }
        let pod = match &state.pod_resolv {
            Some(path) => host
                .read_if_present(path)?
                .map(|t| (path.clone(), resolv_conf::parse(&t))),
            None => None,
        };
        let kubelet = KubeletConfig::read(host).unwrap_or_default();
        let domain = kubelet
            .cluster_domain
            .clone()
            .unwrap_or_else(|| cfg.cluster_domain.clone())
            .trim_end_matches('.')
            .to_owned();

        let mut findings: Vec<Finding> = Vec::new();
        findings.extend(
            node.as_ref()
                .and_then(|n| config_finding("/etc/resolv.conf", n, false)),
        );
        findings.extend(
            pod.as_ref()
                .and_then(|(path, p)| config_finding(path, p, true)),
        );
        let mut section = DnsSection {
            node: node.as_ref().map(|n| summary("/etc/resolv.conf", n)),
            pod: pod.as_ref().map(|(path, p)| summary(path, p)),
            cluster_dns: kubelet.cluster_dns.clone(),
            cluster_domain: domain.clone(),
            ..Default::default()
        };

        // Configured nameservers; else the cluster DNS service and what pods are told to use
        // (NodeLocal DNSCache's link-local address, say). A loopback address in a pod's
        // config is the pod itself: flagged above, not asked.
        let servers: Vec<SocketAddr> = if !cfg.nameservers.is_empty() {
            cfg.nameservers
                .iter()
                .filter_map(|n| nameserver_addr(n, cfg.port))
                .collect()
        } else {
            let pod_servers = pod
                .iter()
                .flat_map(|(_, p)| p.used_nameservers())
                .filter(|ip| !ip.is_loopback());
            let mut all: Vec<SocketAddr> = kubelet
                .cluster_dns
                .iter()
                .filter_map(|n| nameserver_addr(n, cfg.port))
                .chain(pod_servers.map(|ip| SocketAddr::new(*ip, cfg.port)))
                .collect();
            all.sort();
            all.dedup();
            all
        };
        let mut targets: Vec<String> = if cfg.targets.is_empty() && !servers.is_empty() {
            vec![format!("kubernetes.default.svc.{domain}.")]
        } else {
            cfg.targets.clone()
        };
        targets.extend(cfg.external_names.iter().cloned());
        if !cfg.enabled || servers.is_empty() || targets.is_empty() {
            return Ok(ProbeOutput {
                section: Section::Dns(Box::new(section)),
                findings,
            });
        }

        let tcp_cycle = (cycle - 1).is_multiple_of(u64::from(cfg.tcp_every));
        let mut plan: Vec<Key> = Vec::new();
        for server in &servers {
            for target in &targets {
                plan.push((*server, target.clone(), Protocol::Udp));
                if tcp_cycle {
                    plan.push((*server, target.clone(), Protocol::Tcp));
                }
            }
        }
        plan.truncate(cfg.max_queries);
        let outcomes = run_all(&plan, cfg.concurrency, cfg.query_timeout);
        for (key, outcome) in plan.iter().zip(&outcomes) {
            state
                .windows
                .entry(key.clone())
                .or_insert_with(|| Window::new(cfg.window))
                .record(outcome);
        }
        state
            .windows
            .retain(|(server, name, _), _| servers.contains(server) && targets.contains(name));
        section.queries_sent = plan.len() as u32;

        let left = cfg.max_queries.saturating_sub(plan.len());
        if (cycle - 1).is_multiple_of(u64::from(cfg.search_every)) && left > 0 {
            let search_conf = pod
                .as_ref()
                .map(|(_, p)| p.clone())
                .unwrap_or_else(|| ResolvConf {
                    search: vec![
                        format!("default.svc.{domain}"),
                        format!("svc.{domain}"),
                        domain.clone(),
                    ],
                    ndots: 5,
                    ..ResolvConf::default()
                });
            let lookup = search_lookup(servers[0], &search_conf, left, cfg.query_timeout);
            section.queries_sent += lookup.queries;
            section.search_lookup = Some(lookup);
        }

        let mut keys: Vec<&Key> = state.windows.keys().collect();
        keys.sort();
        for key in keys {
            let window = &state.windows[key];
            let stats = window.stats(&key.0.to_string(), &key.1, key.2.as_str());
            // The same server answering other names over the same protocol means the
            // trouble is this name's, not the server's.
            let answers_others = state
                .windows
                .iter()
                .any(|(k, w)| k.0 == key.0 && k.2 == key.2 && k.1 != key.1 && w.last_answered());
            findings.extend(judge(window, &stats, key.2, answers_others, cfg.slow_p95));
            section.probes.push(stats);
        }
        debug!(message = "DNS probe done.", queries = section.queries_sent, elapsed = ?started.elapsed());
        Ok(ProbeOutput {
            section: Section::Dns(Box::new(section)),
            findings,
        })
    }
}

/// Runs the planned queries, `concurrency` at a time; outcomes in plan order.
fn run_all(plan: &[Key], concurrency: usize, timeout: Duration) -> Vec<Outcome> {
    let next = AtomicUsize::new(0);
    let mut results: Vec<(usize, Outcome)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..concurrency.min(plan.len()))
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((server, name, protocol)) = plan.get(i) else {
                            break;
                        };
                        done.push((i, query(*server, name, *protocol, timeout)));
                    }
                    done
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_default())
            .collect()
    });
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, o)| o).collect()
}

/// Resolves [`SEARCH_NAME`] through `conf`'s search list as a stub resolver would, one
/// candidate after the other, at most `max_queries` queries. Like glibc's, it gives up at
/// the first candidate the server does not answer: walking on would cost a timeout per
/// candidate and blow the probe's deadline when the server is down.
fn search_lookup(
    server: SocketAddr,
    conf: &ResolvConf,
    max_queries: usize,
    timeout: Duration,
) -> DnsSearchLookup {
    let started = Instant::now();
    let mut lookup = DnsSearchLookup {
        nameserver: server.to_string(),
        name: SEARCH_NAME.to_owned(),
        ..Default::default()
    };
    for candidate in conf.candidates(SEARCH_NAME).into_iter().take(max_queries) {
        lookup.queries += 1;
        match query(server, &format!("{candidate}."), Protocol::Udp, timeout) {
            Outcome::Answered {
                rcode: ResponseCode::NoError,
                answers,
                ..
            } if !answers.is_empty() => {
                lookup.resolved_as = candidate;
                break;
            }
            Outcome::Answered { .. } => {}
            Outcome::Timeout | Outcome::Unreachable(_) | Outcome::Failed(_) => break,
        }
    }
    lookup.total_ms = started.elapsed().as_secs_f64() * 1e3;
    lookup
}

/// The findings of one window.
fn judge(
    window: &Window,
    s: &nodemedic_proto::v1::DnsProbeStats,
    protocol: Protocol,
    answers_others: bool,
    slow: Duration,
) -> Vec<Finding> {
    let server = format!("{}://{}", s.protocol, s.nameserver);
    let about = format!("{} via {server}", s.name);
    let evidence = |f: Finding| {
        f.with(Evidence::count("samples", u64::from(s.samples)))
            .with(Evidence::count("timeouts", u64::from(s.timeouts)))
            .with(Evidence::number("p95", s.p95_ms, "milliseconds"))
            .with(Evidence::text("last_outcome", s.last_outcome.clone()))
    };
    let mut out = Vec::new();
    if window.last_timed_out(3) && answers_others {
        out.push(evidence(Finding::fail(
            checks::DNS_FAILING,
            Severity::Critical,
            &about,
            format!(
                "{} gives no answer for {} ({} timeouts in the last {} queries) while it answers other names: the upstream that serves this name is down or unreachable from it.",
                s.nameserver, s.name, s.timeouts, s.samples
            ),
        )));
        return out;
    }
    if window.last_unreachable() || window.last_timed_out(3) {
        let why = if protocol == Protocol::Tcp {
            "answers that do not fit in UDP (truncated) cannot be fetched, and resolvers with use-vc fail"
        } else {
            "pods that use it cannot resolve names"
        };
        out.push(evidence(Finding::fail(
            checks::DNS_UNREACHABLE,
            Severity::Critical,
            &server,
            format!(
                "{} does not answer over {} ({}): {why}.",
                s.nameserver,
                s.protocol.to_uppercase(),
                s.last_outcome
            ),
        )));
        return out;
    }
    if let Some(rcode @ (ResponseCode::ServFail | ResponseCode::NXDomain | ResponseCode::Refused)) =
        window.last_rcode()
    {
        out.push(evidence(Finding::fail(
            checks::DNS_FAILING,
            Severity::Critical,
            &about,
            format!("{} answers {} for {}, a name that must resolve ({} SERVFAIL, {} NXDOMAIN in the last {} queries).", s.nameserver, client::rcode_name(rcode), s.name, s.servfail, s.nxdomain, s.samples),
        )));
    }
    let slow_ms = slow.as_secs_f64() * 1e3;
    if s.answered >= 3 && s.p95_ms > slow_ms {
        out.push(evidence(Finding::fail(
            checks::DNS_SLOW,
            Severity::Warning,
            &about,
            format!("{} answers {} slowly: p95 {:.0} ms, max {:.0} ms over {} answers (threshold {:.0} ms).", s.nameserver, s.name, s.p95_ms, s.max_ms, s.answered, slow_ms),
        )));
    } else if s.timeouts >= 2 && s.timeouts * 2 < s.samples {
        out.push(evidence(Finding::fail(
            checks::DNS_TIMEOUTS_5S,
            Severity::Warning,
            &about,
            format!(
                "{} of {} queries for {} to {} got no answer while the rest answered in p95 {:.0} ms: isolated lost queries are the conntrack race pattern, and a pod's resolver waits its whole timeout (5 s) before it retries. Add `single-request-reopen` to the pods' dnsConfig options, or run NodeLocal DNSCache.",
                s.timeouts, s.samples, s.name, s.nameserver, s.p95_ms
            ),
        )));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fixture;

    #[test]
    fn real_configs_give_the_findings_a_resolver_hides() {
        let eks = resolv_conf::parse(&fixture("dns/resolv.conf.eks-default-eksctl-pr-550"));
        let f = config_finding("/pod/resolv.conf", &eks, true).unwrap();
        assert_eq!(f.severity(), Severity::Info);
        assert!(f.message.contains("cost 12 queries"), "{}", f.message);

        let bad = resolv_conf::parse(
            "nameserver 10.0.0.1\nnameserver 10.0.0.2\nnameserver 10.0.0.3\nnameserver 127.0.0.53\nsearch a b c d e f g\noptions ndots:5\n",
        );
        let f = config_finding("/pod/resolv.conf", &bad, true).unwrap();
        assert_eq!(f.severity(), Severity::Critical, "loopback in a pod");
        for part in [
            "4 nameservers",
            "ignore 127.0.0.53",
            "7 search domains",
            "is loopback",
            "cost 16 queries",
        ] {
            assert!(f.message.contains(part), "{part}: {}", f.message);
        }
        let f = config_finding("/etc/resolv.conf", &bad, false).unwrap();
        assert_eq!(
            f.severity(),
            Severity::Warning,
            "loopback is fine on the node"
        );
        assert!(
            config_finding(
                "/etc/resolv.conf",
                &resolv_conf::parse("nameserver 10.0.0.1\n"),
                false
            )
            .is_none()
        );
    }

    #[test]
    fn a_search_lookup_gives_up_at_a_server_that_does_not_answer() {
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let conf = resolv_conf::parse("search a.example b.example c.example\noptions ndots:5\n");
        let lookup = search_lookup(
            silent.local_addr().unwrap(),
            &conf,
            6,
            Duration::from_millis(100),
        );
        assert_eq!(lookup.queries, 1, "{lookup:?}");
        assert_eq!(lookup.resolved_as, "");
    }

    #[test]
    fn nameservers_with_and_without_ports() {
        assert_eq!(
            nameserver_addr("10.96.0.10", 53),
            Some("10.96.0.10:53".parse().unwrap())
        );
        assert_eq!(
            nameserver_addr("127.0.0.2:5353", 53),
            Some("127.0.0.2:5353".parse().unwrap())
        );
        assert_eq!(
            nameserver_addr("[::1]:53", 53),
            Some("[::1]:53".parse().unwrap())
        );
        assert_eq!(nameserver_addr("dns.example", 53), None);
    }
}
