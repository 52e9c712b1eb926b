//! The shipped Prometheus alerts (`deploy/prometheus/`): what `nodemedic runbook alerts`
//! makes from the catalog now, valid for a real `promtool`, and firing and resolving as its
//! unit tests (`tests.yaml`) expect.

use std::{path::PathBuf, process::Command};

use nodemedic_tests::cli;

fn shipped(name: &str) -> (PathBuf, String) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/prometheus")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (path, text)
}

fn promtool(args: &[&str]) -> (bool, String) {
    let out = Command::new("promtool")
        .args(args)
        .output()
        .expect("promtool (Debian's prometheus; scripts/test installs it)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

#[test]
fn the_shipped_alerts_are_the_catalogs_and_promtool_checks_and_tests_them() {
    for (file, args) in [
        ("nodemedic.rules.yaml", &["runbook", "alerts"][..]),
        (
            "prometheusrule.yaml",
            &["runbook", "alerts", "--prometheus-rule"][..],
        ),
    ] {
        let (code, made) = cli(args);
        assert_eq!(code, 0);
        let (path, text) = shipped(file);
        assert!(
            made == text,
            "{} is not what `nodemedic {}` makes now; write it again with that command",
            path.display(),
            args.join(" ")
        );
    }
    let (rules, _) = shipped("nodemedic.rules.yaml");
    let (ok, said) = promtool(&["check", "rules", rules.to_str().unwrap()]);
    assert!(ok, "{said}");
    let (tests, _) = shipped("tests.yaml");
    let (ok, said) = promtool(&["test", "rules", tests.to_str().unwrap()]);
    assert!(ok && said.contains("SUCCESS"), "{said}");
}
