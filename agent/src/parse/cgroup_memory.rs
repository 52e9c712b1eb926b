//! A memory cgroup's files, v1 (`memory.usage_in_bytes`, `memory.limit_in_bytes`,
//! `memory.stat`, `memory.oom_control`, `memory.failcnt`) and v2 (`memory.current`,
//! `memory.max`, `memory.stat`, `memory.events`, `memory.pressure`), as one shape.

use nodemedic_proto::v1::Psi;

use super::{ParseError, psi};

/// A v1 limit at or above this is "no limit" (the kernel writes `PAGE_COUNTER_MAX` pages).
const V1_UNLIMITED: u64 = 1 << 62;

/// What a memory cgroup says about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct CgroupMemory {
    /// Bytes charged to the cgroup.
    pub usage: u64,
    /// Its limit; `None` when unlimited.
    pub limit: Option<u64>,
    /// Usage minus inactive file pages: what the kubelet compares with the limit and
    /// evicts on.
    pub working_set: u64,
    /// Anonymous memory (v1 `total_rss`, v2 `anon`).
    pub rss: u64,
    /// Page cache (v1 `total_cache`, v2 `file`).
    pub cache: u64,
    /// Processes the kernel OOM-killed in it.
    pub oom_kills: u64,
    /// Times the usage hit the limit (v1 `memory.failcnt`, v2 `memory.events` `max`).
    pub limit_hits: u64,
    /// Times it was throttled above `memory.high` (v2 only).
    pub high_events: u64,
    /// Memory pressure stall (v2 `memory.pressure`), percent.
    pub pressure: Option<Psi>,
}

/// The values of `keys` in a `key value` file (0 for a key that is absent), without
/// building a map of the forty-odd keys of `memory.stat`: it is read for every container
/// at every report.
fn values<const N: usize>(text: &str, keys: [&str; N], file: &str) -> Result<[u64; N], ParseError> {
    let mut out = [0; N];
    for (i, line) in text.lines().enumerate() {
        let Some((key, value)) = line.split_once(' ') else {
            continue;
        };
        if let Some(at) = keys.iter().position(|k| *k == key) {
            out[at] = value.trim().parse().map_err(|_| {
                ParseError::new(i + 1, format!("{file}: {key}: {value:?} is not a number"))
            })?;
        }
    }
    Ok(out)
}

fn number(text: &str, file: &str) -> Result<u64, ParseError> {
    text.trim()
        .parse()
        .map_err(|_| ParseError::new(1, format!("{file}: {:?} is not a number", text.trim())))
}

/// The v1 files' texts.
pub fn v1(
    usage: &str,
    limit: &str,
    stat: &str,
    oom_control: &str,
    failcnt: &str,
) -> Result<CgroupMemory, ParseError> {
    let usage = number(usage, "memory.usage_in_bytes")?;
    let limit = Some(number(limit, "memory.limit_in_bytes")?).filter(|l| *l < V1_UNLIMITED);
    // The hierarchical counters (total_*) include child cgroups: a pod's covers its containers.
    let [inactive_file, rss, cache] = values(
        stat,
        ["total_inactive_file", "total_rss", "total_cache"],
        "memory.stat",
    )?;
    let [oom_kills] = values(oom_control, ["oom_kill"], "memory.oom_control")?;
    Ok(CgroupMemory {
        usage,
        limit,
        working_set: usage.saturating_sub(inactive_file),
        rss,
        cache,
        oom_kills,
        limit_hits: number(failcnt, "memory.failcnt")?,
        high_events: 0,
        pressure: None,
    })
}

/// The v2 files' texts (`memory.pressure` is absent without PSI).
pub fn v2(
    current: &str,
    max: &str,
    stat: &str,
    events: &str,
    pressure: Option<&str>,
) -> Result<CgroupMemory, ParseError> {
    let usage = number(current, "memory.current")?;
    let limit = match max.trim() {
        "max" => None,
        other => Some(number(other, "memory.max")?),
    };
    let [inactive_file, anon, file] =
        values(stat, ["inactive_file", "anon", "file"], "memory.stat")?;
    let [oom_kills, limit_hits, high_events] =
        values(events, ["oom_kill", "max", "high"], "memory.events")?;
    Ok(CgroupMemory {
        usage,
        limit,
        working_set: usage.saturating_sub(inactive_file),
        rss: anon,
        cache: file,
        oom_kills,
        limit_hits,
        high_events,
        pressure: pressure
            .map(|p| {
                psi::parse(p)
                    .map_err(|e| ParseError::new(e.line, format!("memory.pressure: {}", e.reason)))
            })
            .transpose()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_working_set_is_usage_minus_inactive_file_as_the_kubelet_counts() {
        // Shaped as this machine's v1 memory controller writes them (a container cgroup).
        let m = v1(
            "52428800\n",
            "67108864\n",
            "cache 8388608\nrss 41943040\ninactive_file 4194304\nactive_file 4194304\n\
             total_cache 8388608\ntotal_rss 41943040\ntotal_inactive_file 4194304\n",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
            "17\n",
        )
        .unwrap();
        assert_eq!(m.usage, 50 << 20);
        assert_eq!(m.limit, Some(64 << 20));
        assert_eq!(m.working_set, 46 << 20);
        assert_eq!((m.rss, m.cache), (40 << 20, 8 << 20));
        assert_eq!((m.oom_kills, m.limit_hits), (2, 17));
    }

    #[test]
    fn v1_no_limit() {
        let m = v1("1\n", "9223372036854771712\n", "", "oom_kill 0\n", "0\n").unwrap();
        assert_eq!(m.limit, None);
    }

    /// cgroup v2 cannot run beside v1's memory controller on this machine, so these are the
    /// files as the kernel documents them (Documentation/admin-guide/cgroup-v2.rst: the
    /// keys of memory.stat and memory.events, "max" in memory.max, PSI's format).
    #[test]
    fn v2_files_as_documented() {
        let m = v2(
            "104857600\n",
            "134217728\n",
            "anon 83886080\nfile 20971520\nkernel 1048576\nshmem 0\nfile_mapped 4194304\n\
             active_anon 83886080\ninactive_anon 0\nactive_file 10485760\ninactive_file 10485760\n\
             pgfault 123456\npgmajfault 12\n",
            "low 0\nhigh 42\nmax 7\noom 1\noom_kill 1\noom_group_kill 0\n",
            Some("some avg10=1.50 avg60=0.75 avg300=0.20 total=1234567\nfull avg10=0.50 avg60=0.25 avg300=0.05 total=234567\n"),
        )
        .unwrap();
        assert_eq!(m.limit, Some(128 << 20));
        assert_eq!(m.working_set, 90 << 20);
        assert_eq!((m.rss, m.cache), (80 << 20, 20 << 20));
        assert_eq!((m.oom_kills, m.limit_hits, m.high_events), (1, 7, 42));
        assert_eq!(m.pressure.unwrap().some_avg60, 0.75);
        assert_eq!(v2("1\n", "max\n", "", "", None).unwrap().limit, None);
    }

    #[test]
    fn garbage_names_the_file() {
        let err = v2("lots\n", "max\n", "", "", None).unwrap_err();
        assert!(err.reason.contains("memory.current"), "{err}");
        let err = v1("1\n", "2\n", "total_cache x\n", "", "0\n").unwrap_err();
        assert!(err.reason.contains("memory.stat"), "{err}");
    }
}
