//! The manifests in `deploy/` against the programs they run: the agent's config and the
//! site runbook rules they ship load, and every flag the agent DaemonSet and the collector
//! StatefulSet pass is one the binary takes. (scripts/check-deploy validates the objects
//! themselves against the Kubernetes schemas; the container test runs the images.)

use std::{path::Path, process::Command};

use nodemedic_tests::binary;

fn deploy(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(rel)
}

#[test]
fn the_shipped_agent_config_and_site_runbooks_load() {
    nodemedic_agent::config::Config::load(&deploy("base/config/agent.yaml"))
        .expect("deploy/base/config/agent.yaml");
    nodemedic_collector::runbook::Catalog::with_dir(&deploy("base/config/runbooks"))
        .expect("deploy/base/config/runbooks");
}

/// The `--flag` names in the container args of the object of `kind` in the rendered file.
fn flags(rendered: &str, kind: &str) -> Vec<String> {
    doc(rendered, kind)
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("- --"))
        .map(|f| f.split('=').next().unwrap().to_owned())
        .collect()
}

#[test]
fn every_flag_in_the_manifests_is_one_the_binary_takes() {
    let rendered = std::fs::read_to_string(deploy("nodemedic.yaml")).unwrap();
    for (kind, program) in [
        ("DaemonSet", "nodemedic-agent"),
        ("StatefulSet", "nodemedic-collector"),
    ] {
        let help = Command::new(binary(program))
            .arg("--help")
            .output()
            .unwrap();
        let help = String::from_utf8(help.stdout).unwrap();
        let flags = flags(&rendered, kind);
        assert!(flags.len() >= 5, "{kind}: {flags:?}");
        for flag in flags {
            assert!(
                help.contains(&format!("--{flag} ")) || help.contains(&format!("--{flag}\n")),
                "{kind} passes --{flag}, which {program} does not take"
            );
        }
    }
}

/// The document of the rendered file whose `kind:` is `kind`.
fn doc<'a>(rendered: &'a str, kind: &str) -> &'a str {
    rendered
        .split("\n---\n")
        .find(|d| d.lines().any(|l| l == format!("kind: {kind}")))
        .unwrap_or_else(|| panic!("no {kind} in deploy/nodemedic.yaml"))
}

#[test]
fn both_workloads_run_on_linux_nodes_only_and_nothing_budgets_one_replica() {
    let rendered = std::fs::read_to_string(deploy("nodemedic.yaml")).unwrap();
    for kind in ["DaemonSet", "StatefulSet"] {
        let d = doc(&rendered, kind);
        assert!(
            d.contains("nodeSelector:\n        kubernetes.io/os: linux"),
            "{kind} selects Linux nodes:\n{d}"
        );
        assert!(d.contains("ephemeral-storage:"), "{kind} bounds its logs");
    }
    assert!(
        !rendered.contains("kind: PodDisruptionBudget"),
        "a budget on the one collector replica protects nothing (deploy/README.md)"
    );
    assert!(
        doc(&rendered, "StatefulSet").contains("replicas: 1"),
        "one collector: if it ever has more, decide on a budget again"
    );
}

#[test]
fn the_agent_may_write_exactly_its_node_status_and_events() {
    let rendered = std::fs::read_to_string(deploy("nodemedic.yaml")).unwrap();
    let role: serde_json::Value = serde_saphyr::from_str(doc(&rendered, "ClusterRole")).unwrap();
    let mut writes = std::collections::BTreeSet::new();
    for rule in role["rules"].as_array().unwrap() {
        for group in rule["apiGroups"].as_array().unwrap() {
            for resource in rule["resources"].as_array().unwrap() {
                for verb in rule["verbs"].as_array().unwrap() {
                    let verb = verb.as_str().unwrap();
                    if !["get", "list", "watch"].contains(&verb) {
                        writes.insert(format!(
                            "{}/{} {verb}",
                            group.as_str().unwrap(),
                            resource.as_str().unwrap()
                        ));
                    }
                }
            }
        }
    }
    assert_eq!(
        writes.into_iter().collect::<Vec<_>>(),
        [
            "/nodes/status patch",
            "events.k8s.io/events create",
            "events.k8s.io/events patch"
        ]
    );
    // The admission policy that limits them to the agent's own node, and its binding.
    let policy = doc(&rendered, "ValidatingAdmissionPolicy");
    assert!(
        policy.contains("authentication.kubernetes.io/node-name"),
        "{policy}"
    );
    assert!(policy.contains("system:serviceaccount:nodemedic:nodemedic-agent"));
    assert!(
        doc(&rendered, "ValidatingAdmissionPolicyBinding").contains("validationActions:\n  - Deny")
    );
}
