//! A CPU cgroup's bandwidth files: its limit (v1 `cpu.cfs_quota_us` and `cpu.cfs_period_us`,
//! v2 `cpu.max`) and how often the kernel throttled it (`cpu.stat`: `nr_periods`,
//! `nr_throttled`, and v1's `throttled_time` in ns or v2's `throttled_usec`), as one shape.

use super::ParseError;

/// What a CPU cgroup says about its bandwidth.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CgroupCpu {
    /// Its limit in CPUs (quota / period); `None` when unlimited.
    pub limit_cpus: Option<f64>,
    /// Enforcement periods in which it ran.
    pub periods: u64,
    /// Periods in which it used up its quota and was stopped until the next.
    pub throttled_periods: u64,
    /// Time it spent stopped, in microseconds.
    pub throttled_micros: u64,
}

/// `cpu.stat` of either version, with the v1 limit files (`quota_us` is `-1` when
/// unlimited).
pub fn v1(stat: &str, quota_us: &str, period_us: &str) -> Result<CgroupCpu, ParseError> {
    let quota: i64 = number(quota_us, "cpu.cfs_quota_us")?;
    let period: i64 = number(period_us, "cpu.cfs_period_us")?;
    let mut cpu = stat_of(stat)?;
    cpu.limit_cpus = limit(quota, period);
    Ok(cpu)
}

/// `cpu.stat` and `cpu.max` (`max 100000` when unlimited, else `<quota> <period>`).
pub fn v2(stat: &str, max: &str) -> Result<CgroupCpu, ParseError> {
    let mut fields = max.split_whitespace();
    let quota = fields.next().unwrap_or("max");
    let period = fields.next().unwrap_or("100000");
    let mut cpu = stat_of(stat)?;
    cpu.limit_cpus = if quota == "max" {
        None
    } else {
        limit(number(quota, "cpu.max")?, number(period, "cpu.max")?)
    };
    Ok(cpu)
}

fn limit(quota: i64, period: i64) -> Option<f64> {
    (quota > 0 && period > 0).then(|| quota as f64 / period as f64)
}

fn number<T: std::str::FromStr>(text: &str, file: &str) -> Result<T, ParseError> {
    text.trim()
        .parse()
        .map_err(|_| ParseError::new(1, format!("{file}: {:?} is not a number", text.trim())))
}

fn stat_of(text: &str) -> Result<CgroupCpu, ParseError> {
    let mut cpu = CgroupCpu::default();
    for (i, line) in text.lines().enumerate() {
        let Some((key, value)) = line.split_once(' ') else {
            continue;
        };
        let value = || -> Result<u64, ParseError> {
            value.trim().parse().map_err(|_| {
                ParseError::new(i + 1, format!("cpu.stat: {key}: {value:?} is not a number"))
            })
        };
        match key {
            "nr_periods" => cpu.periods = value()?,
            "nr_throttled" => cpu.throttled_periods = value()?,
            "throttled_usec" => cpu.throttled_micros = value()?,
            "throttled_time" => cpu.throttled_micros = value()? / 1000,
            _ => {}
        }
    }
    Ok(cpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_counts_nanoseconds_and_minus_one_is_unlimited() {
        let stat = "nr_periods 1200\nnr_throttled 840\nthrottled_time 61234000000\nnr_bursts 0\nburst_time 0\n";
        let cpu = v1(stat, "20000\n", "100000\n").unwrap();
        assert_eq!(
            cpu,
            CgroupCpu {
                limit_cpus: Some(0.2),
                periods: 1200,
                throttled_periods: 840,
                throttled_micros: 61_234_000,
            }
        );
        assert_eq!(v1(stat, "-1\n", "100000\n").unwrap().limit_cpus, None);
    }

    #[test]
    fn v2_as_the_kernel_documents_it() {
        let stat = "usage_usec 8231990\nuser_usec 7012000\nsystem_usec 1219990\nnr_periods 300\nnr_throttled 120\nthrottled_usec 4500000\n";
        let cpu = v2(stat, "50000 100000\n").unwrap();
        assert_eq!(cpu.limit_cpus, Some(0.5));
        assert_eq!((cpu.periods, cpu.throttled_periods), (300, 120));
        assert_eq!(cpu.throttled_micros, 4_500_000);
        assert_eq!(v2(stat, "max 100000\n").unwrap().limit_cpus, None);
        assert!(v2("nr_periods lots\n", "max 100000").is_err());
        assert!(v2(stat, "half 100000").is_err());
    }
}
