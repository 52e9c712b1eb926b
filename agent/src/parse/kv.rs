//! `/proc/meminfo` (`MemAvailable:  123 kB`) and `/proc/vmstat` (`oom_kill 3`): one key and
//! one number a line.

use std::collections::HashMap;

use super::ParseError;

/// Keys and values of a key-value file. Values with a `kB` unit are converted to bytes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KvFile(HashMap<String, u64>);

impl KvFile {
    /// Parses `key[:] value [kB]` lines; blank lines are skipped.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let mut map = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let mut fields = line.split_whitespace();
            let Some(key) = fields.next() else { continue };
            let key = key.trim_end_matches(':');
            let value = fields
                .next()
                .ok_or_else(|| ParseError::new(i + 1, format!("{key}: no value")))?;
            let value: u64 = value
                .parse()
                .map_err(|_| ParseError::new(i + 1, format!("{key}: {value:?} is not a number")))?;
            let value = match fields.next() {
                None => value,
                Some("kB") => value.saturating_mul(1024),
                Some(unit) => {
                    return Err(ParseError::new(
                        i + 1,
                        format!("{key}: unknown unit {unit:?}"),
                    ));
                }
            };
            map.insert(key.to_owned(), value);
        }
        Ok(KvFile(map))
    }

    /// The value of a key.
    pub fn get(&self, key: &str) -> Option<u64> {
        self.0.get(key).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fixture;

    #[test]
    fn parses_real_meminfo_in_bytes() {
        let m = KvFile::parse(&fixture("proc/hotsos-k8s-node-meminfo")).unwrap();
        assert_eq!(m.get("MemTotal"), Some(4_026_036 * 1024));
        assert_eq!(m.get("MemAvailable"), Some(2_775_844 * 1024));
        assert_eq!(m.get("HugePages_Total"), Some(0));
    }

    #[test]
    fn parses_procfs_fixture_meminfo() {
        let m = KvFile::parse(&fixture("proc/procfs-go-fixture-meminfo")).unwrap();
        assert!(m.get("MemTotal").unwrap() > 0);
        assert!(m.get("SwapTotal").is_some());
    }

    #[test]
    fn parses_real_vmstat() {
        let v = KvFile::parse(&fixture("proc/hotsos-k8s-node-vmstat")).unwrap();
        assert_eq!(v.get("oom_kill"), Some(0));
        assert!(v.get("pgfault").unwrap() > 0);
    }

    #[test]
    fn rejects_garbage_with_the_line() {
        let err = KvFile::parse("MemTotal: 10 kB\nMemFree: lots kB\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.reason.contains("MemFree"), "{err}");
    }
}
