//! The pods probe on a full node: 110 pods (real recorded pods, copied with their own
//! UIDs), 1,000 Warning events. What the compact view holds against the objects a
//! reflector store would hold, and what one judging of the view costs.
//!
//! `cargo bench -p nodemedic-agent --bench pods`

use std::{
    alloc::System,
    time::{Duration, Instant, SystemTime},
};

use k8s_openapi::api::core::v1::{Event, Pod};
use nodemedic_agent::{
    config::KubernetesConfig, kubernetes::cluster::Cluster, probes::pods::judge, testing::fixture,
};
use serde_json::Value;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const PODS: usize = 110;
const EVENTS: usize = 1000;

fn items(rel: &str) -> Vec<Value> {
    let v: Value = serde_json::from_str(&fixture(rel)).unwrap();
    v["items"].as_array().unwrap().clone()
}

/// Bytes still allocated after `f` ran and its result is kept.
fn held<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let region = Region::new(GLOBAL);
    let value = f();
    let stats = region.change();
    (
        value,
        stats
            .bytes_allocated
            .saturating_sub(stats.bytes_deallocated),
    )
}

fn main() {
    let templates = [
        items("pods/hotsos-sunbeam-pods-restarts-subset.json"),
        items("pods/troubleshoot-pods-message-pod-crashloop-backoff.json"),
        items("pods/troubleshoot-pods-message-image-pull-fail.json"),
    ]
    .concat();
    let pods: Vec<Value> = (0..PODS)
        .map(|i| {
            let mut p = templates[i % templates.len()].clone();
            p["metadata"]["uid"] = Value::from(format!("00000000-0000-4000-8000-{i:012}"));
            p["metadata"]["name"] = Value::from(format!("pod-{i}"));
            p
        })
        .collect();
    let unhealthy: Vec<Value> = items("pods/hotsos-sunbeam-events-unhealthy-imagepullsecret.json")
        .into_iter()
        .filter(|e| e["type"] == "Warning")
        .collect();
    let events: Vec<Value> = (0..EVENTS)
        .map(|i| {
            let mut e = unhealthy[i % unhealthy.len()].clone();
            e["metadata"]["name"] = Value::from(format!("event-{i}"));
            e["involvedObject"]["uid"] =
                Value::from(format!("00000000-0000-4000-8000-{:012}", i % PODS));
            e
        })
        .collect();
    let json_bytes: usize = pods.iter().map(|p| p.to_string().len()).sum();

    let (objects, objects_bytes) = held(|| {
        pods.iter()
            .map(|p| serde_json::from_value::<Pod>(p.clone()).unwrap())
            .collect::<Vec<Pod>>()
    });
    let typed_events: Vec<Event> = events
        .iter()
        .map(|e| serde_json::from_value(e.clone()).unwrap())
        .collect();
    let now = SystemTime::now();
    let (mut cluster, view_bytes) = held(|| {
        let mut c = Cluster::default();
        for p in &objects {
            c.apply_pod(p, now);
        }
        c
    });
    let (_, events_bytes) = held(|| {
        for e in &typed_events {
            cluster.apply_event(e, now, EVENTS);
        }
    });
    println!(
        "{PODS} pods ({} containers, {} KB of JSON): full objects {} KB, compact view {} KB; {} events in the view: {} KB",
        cluster
            .pods
            .values()
            .map(|p| p.containers.len())
            .sum::<usize>(),
        json_bytes / 1000,
        objects_bytes / 1000,
        view_bytes / 1000,
        cluster.events.len(),
        events_bytes / 1000,
    );

    // Updates keep it bounded: every pod modified 100 times, 10,000 more events.
    let (_, growth) = held(|| {
        for round in 0..100 {
            for p in &objects {
                cluster.apply_pod(p, now + Duration::from_secs(round));
            }
        }
        for e in typed_events.iter().cycle().take(10 * EVENTS) {
            cluster.apply_event(e, now, EVENTS);
        }
    });
    println!(
        "after 11,000 pod updates and 10,000 events: {} bytes more held",
        growth as isize
    );

    let config = KubernetesConfig::default();
    let runs = 1000;
    let start = Instant::now();
    let mut findings = 0;
    for _ in 0..runs {
        findings = judge::findings(&cluster, &config, now).len();
    }
    println!(
        "judging the view: {:.0} µs per report ({findings} findings)",
        start.elapsed().as_secs_f64() * 1e6 / f64::from(runs)
    );
}
