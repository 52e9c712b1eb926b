//! Filling `{{placeholder}}`s from a finding.

use nodemedic_proto::v1::{Finding, evidence};

/// The placeholder names in `text`.
pub fn placeholders(text: &str) -> impl Iterator<Item = &str> {
    text.split("{{")
        .skip(1)
        .filter_map(|part| part.split_once("}}").map(|(name, _)| name.trim()))
}

/// `text` with its placeholders filled from `finding`: `node`, `subject` (and `mount`,
/// `nameserver`, `name` derived from it), and any evidence of the same key. A placeholder
/// with no value stays as `<name>` for the reader to fill in.
pub fn render(text: &str, finding: &Finding) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find("}}") else {
            break;
        };
        let name = rest[start + 2..start + end].trim();
        out.push_str(&value(name, finding).unwrap_or_else(|| format!("<{name}>")));
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    out
}

fn value(name: &str, f: &Finding) -> Option<String> {
    let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    // DNS subjects read "NAME via PROTO://NAMESERVER" or "PROTO://NAMESERVER".
    let (dns_name, server) = match f.subject.split_once(" via ") {
        Some((n, s)) => (Some(n), Some(s)),
        None => (
            None,
            f.subject.contains("://").then_some(f.subject.as_str()),
        ),
    };
    match name {
        "node" => nonempty(&f.node),
        "subject" | "mount" => nonempty(&f.subject),
        "nameserver" => server
            .and_then(|s| s.split_once("://"))
            .map(|(_, ns)| ns.to_owned()),
        "name" => dns_name.map(str::to_owned),
        _ => f
            .evidence
            .iter()
            .find(|e| e.key == name)
            .and_then(|e| match &e.value {
                Some(evidence::Value::Text(t)) => Some(t.clone()),
                Some(evidence::Value::Number(n)) => Some(format!("{n}")),
                None => None,
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nodemedic_proto::v1::{Evidence, Severity};

    #[test]
    fn fills_from_the_finding() {
        let f = Finding {
            node: "n1".into(),
            ..Finding::fail(
                "dns.failing",
                Severity::Critical,
                "kubernetes.default. via udp://10.96.0.10:53",
                String::new(),
            )
        }
        .with(Evidence::bytes("bytes", 1024));
        assert_eq!(
            render("dig @{{nameserver}} {{name}} on {{ node }}", &f),
            "dig @10.96.0.10:53 kubernetes.default. on n1"
        );
        assert_eq!(render("{{bytes}} and {{pod}}", &f), "1024 and <pod>");
        assert_eq!(
            placeholders("a {{x}} b {{ y }}").collect::<Vec<_>>(),
            ["x", "y"]
        );
    }
}
