//! `resolv.conf`, read the way glibc reads it: the last `search`/`domain` line wins,
//! options accumulate, numbers are capped where glibc caps them. What glibc (and musl)
//! silently drop is kept here, so the DNS probe can say so.

use std::net::IpAddr;

/// glibc uses at most this many nameservers (MAXNS); musl too.
pub const MAX_NAMESERVERS: usize = 3;
/// glibc before 2.26 used at most this many search domains (MAXDNSRCH); musl still does.
pub const MAX_SEARCH_DOMAINS: usize = 6;
/// glibc before 2.26 truncated the search list at this many characters.
pub const MAX_SEARCH_CHARS: usize = 256;

/// A parsed resolver configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvConf {
    /// Every `nameserver` line, in order (including those past [`MAX_NAMESERVERS`]).
    pub nameservers: Vec<IpAddr>,
    /// `nameserver` values that are not IP addresses.
    pub invalid_nameservers: Vec<String>,
    /// The search list of the last `search` or `domain` line.
    pub search: Vec<String>,
    /// `options ndots:N` (default 1, capped at 15).
    pub ndots: u8,
    /// `options timeout:N` seconds (default 5, capped at 30).
    pub timeout: u8,
    /// `options attempts:N` (default 2, capped at 5).
    pub attempts: u8,
    /// `options rotate`.
    pub rotate: bool,
    /// `options single-request`: A and AAAA one after the other.
    pub single_request: bool,
    /// `options single-request-reopen`: a new socket for the second query.
    pub single_request_reopen: bool,
    /// `options use-vc`: TCP for every query.
    pub use_vc: bool,
    /// Options this parser does not know, as written.
    pub unknown_options: Vec<String>,
}

impl Default for ResolvConf {
    fn default() -> Self {
        ResolvConf {
            nameservers: Vec::new(),
            invalid_nameservers: Vec::new(),
            search: Vec::new(),
            ndots: 1,
            timeout: 5,
            attempts: 2,
            rotate: false,
            single_request: false,
            single_request_reopen: false,
            use_vc: false,
            unknown_options: Vec::new(),
        }
    }
}

/// Parses resolv.conf text. Never fails: the resolver ignores what it cannot read, and so
/// do we (keeping note of it).
pub fn parse(text: &str) -> ResolvConf {
    let mut conf = ResolvConf::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or_default();
        let mut words = line.split_whitespace();
        let Some(keyword) = words.next() else {
            continue;
        };
        match keyword {
            "nameserver" => {
                if let Some(value) = words.next() {
                    // A scope suffix (fe80::1%eth0) is accepted by glibc.
                    match value.split('%').next().unwrap_or(value).parse::<IpAddr>() {
                        Ok(ip) => conf.nameservers.push(ip),
                        Err(_) => conf.invalid_nameservers.push(value.to_owned()),
                    }
                }
            }
            "search" | "domain" => conf.search = words.map(str::to_owned).collect(),
            "options" => {
                for option in words {
                    let number = |max: u8| {
                        option
                            .split_once(':')
                            .and_then(|(_, n)| n.parse::<u32>().ok())
                            .map(|n| n.min(u32::from(max)) as u8)
                    };
                    match option.split(':').next().unwrap_or_default() {
                        "ndots" => conf.ndots = number(15).unwrap_or(conf.ndots),
                        "timeout" => conf.timeout = number(30).unwrap_or(conf.timeout),
                        "attempts" => conf.attempts = number(5).unwrap_or(conf.attempts),
                        "rotate" => conf.rotate = true,
                        "single-request" => conf.single_request = true,
                        "single-request-reopen" => conf.single_request_reopen = true,
                        "use-vc" | "usevc" => conf.use_vc = true,
                        _ => conf.unknown_options.push(option.to_owned()),
                    }
                }
            }
            _ => {}
        }
    }
    conf
}

impl ResolvConf {
    /// The nameservers glibc actually uses.
    pub fn used_nameservers(&self) -> &[IpAddr] {
        &self.nameservers[..self.nameservers.len().min(MAX_NAMESERVERS)]
    }

    /// Characters of the search list as glibc stores it (names and separating spaces).
    pub fn search_chars(&self) -> usize {
        self.search.iter().map(String::len).sum::<usize>() + self.search.len().saturating_sub(1)
    }

    /// The names a stub resolver tries for `name`, in order, until one answers: with fewer
    /// than `ndots` dots, the search list first and the name as is last; otherwise the name
    /// first. A trailing dot means exactly that name.
    pub fn candidates(&self, name: &str) -> Vec<String> {
        if let Some(absolute) = name.strip_suffix('.') {
            return vec![absolute.to_owned()];
        }
        let searched = self
            .search
            .iter()
            .map(|domain| format!("{name}.{}", domain.trim_end_matches('.')));
        if name.matches('.').count() >= usize::from(self.ndots) {
            std::iter::once(name.to_owned()).chain(searched).collect()
        } else {
            searched.chain(std::iter::once(name.to_owned())).collect()
        }
    }

    /// Queries sent to resolve an external `name` that exists only as written (every search
    /// candidate before it answers NXDOMAIN): one per candidate tried, twice with AAAA.
    pub fn queries_for_external(&self, name: &str, with_aaaa: bool) -> usize {
        let tried = self
            .candidates(name)
            .iter()
            .position(|c| c == name.trim_end_matches('.'))
            .map_or(0, |i| i + 1);
        tried * if with_aaaa { 2 } else { 1 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fixture;

    #[test]
    fn eks_pod_config_amplifies_external_lookups_sixfold() {
        let c = parse(&fixture("dns/resolv.conf.eks-default-eksctl-pr-550"));
        assert_eq!(c.nameservers, ["172.20.0.10".parse::<IpAddr>().unwrap()]);
        assert_eq!(c.search.len(), 5);
        assert_eq!(c.ndots, 5);
        // api.example.com has 2 dots < 5: five search domains first, then the name.
        assert_eq!(c.queries_for_external("api.example.com", false), 6);
        assert_eq!(c.queries_for_external("api.example.com", true), 12);
        assert_eq!(c.queries_for_external("api.example.com.", true), 2);
        assert_eq!(
            c.candidates("kubernetes.default")[0],
            "kubernetes.default.default.svc.cluster.local"
        );
    }

    #[test]
    fn nodelocal_options_and_the_last_search_line() {
        let c = parse(&fixture(
            "dns/resolv.conf.eks-nodelocal-dnsconfig-eksctl-pr-550",
        ));
        assert_eq!((c.attempts, c.timeout, c.rotate, c.ndots), (3, 1, true, 1));
        let c = parse(
            "search a.example\nsearch b.example c.example\ndomain d.example\noptions ndots:99 timeout:60 single-request-reopen use-vc edns0\n",
        );
        assert_eq!(c.search, ["d.example"]);
        assert_eq!((c.ndots, c.timeout), (15, 30));
        assert!(c.single_request_reopen && c.use_vc);
        assert_eq!(c.unknown_options, ["edns0"]);
    }

    #[test]
    fn every_real_sample_parses() {
        for name in [
            "external-nameserver-kubernetes-dns-issue-341",
            "gke-kubernetes-issue-33554",
            "openshift-origin-issue-21696",
        ] {
            let c = parse(&fixture(&format!("dns/resolv.conf.{name}")));
            assert_eq!(c.nameservers.len(), 1, "{name}");
            assert!(c.search.len() >= 3, "{name}");
            assert_eq!(c.ndots, 5, "{name}");
        }
    }

    #[test]
    fn keeps_what_glibc_drops() {
        let c = parse(
            "nameserver 10.0.0.1\nnameserver 10.0.0.2\nnameserver 10.0.0.3\nnameserver 10.0.0.4\nnameserver dns.example # comment\n",
        );
        assert_eq!(c.nameservers.len(), 4);
        assert_eq!(c.used_nameservers().len(), 3);
        assert_eq!(c.invalid_nameservers, ["dns.example"]);
        let long = parse(&format!(
            "search {}\n",
            (0..8)
                .map(|i| format!("d{i}.{}", "x".repeat(40)))
                .collect::<Vec<_>>()
                .join(" ")
        ));
        assert!(long.search.len() > MAX_SEARCH_DOMAINS && long.search_chars() > MAX_SEARCH_CHARS);
    }
}
