//! `/proc/<pid>/stat`: a process's name and resident set size.

use super::ParseError;

/// What the memory probe needs of one process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    /// `comm`, without the parentheses (it may itself contain spaces and parentheses).
    pub comm: String,
    /// Resident set size in pages.
    pub rss_pages: u64,
}

/// Parses one `stat` line: `pid (comm) state ppid ... rss ...`, where `rss` is field 24.
pub fn parse(text: &str) -> Result<ProcStat, ParseError> {
    let open = text
        .find('(')
        .ok_or_else(|| ParseError::new(1, "no '(' before comm"))?;
    let close = text
        .rfind(')')
        .ok_or_else(|| ParseError::new(1, "no ')' after comm"))?;
    if close < open {
        return Err(ParseError::new(1, "')' before '('"));
    }
    let comm = text[open + 1..close].to_owned();
    // After ")" come fields 3.. (state is 3); rss is field 24, so the 22nd here.
    let rss = text[close + 1..]
        .split_whitespace()
        .nth(21)
        .ok_or_else(|| ParseError::new(1, "fewer than 24 fields"))?;
    let rss_pages = rss
        .parse::<i64>()
        .map_err(|_| ParseError::new(1, format!("rss {rss:?} is not a number")))?
        .max(0) as u64;
    Ok(ProcStat { comm, rss_pages })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_comm_with_spaces_and_parens() {
        let line = "4242 (tmux: server) (x)) S 1 4242 4242 0 -1 4194560 1073 0 0 0 12 3 0 0 20 0 1 0 \
                    1185 9187328 1234 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let s = parse(line).unwrap();
        assert_eq!(s.comm, "tmux: server) (x)");
        assert_eq!(s.rss_pages, 1234);
    }

    #[test]
    fn parses_this_process() {
        let text = std::fs::read_to_string("/proc/self/stat").unwrap();
        let s = parse(&text).unwrap();
        assert!(s.rss_pages > 0);
    }

    #[test]
    fn rejects_truncated_lines() {
        assert!(parse("1 (init) S 0 1").is_err());
        assert!(parse("garbage").is_err());
    }
}
