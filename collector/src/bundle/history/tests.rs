//! Histories written and read back, on reports that drift as real ones do.

use serde_json::{Value, json};

use super::*;

fn written(reports: &[Value], redactor: Option<&Redactor>) -> (Vec<u8>, u64) {
    written_by(&mut History::new(redactor), reports)
}

fn written_by(history: &mut History<'_>, reports: &[Value]) -> (Vec<u8>, u64) {
    for r in reports {
        history.add(r).unwrap();
    }
    let (out, redacted) = history.take();
    (out.expect("reports were added"), redacted)
}

#[test]
fn one_history_serves_node_after_node() {
    let mut history = History::new(None);
    let a: Vec<Value> = (0..5)
        .map(|i| json!({"seq": i, "only_a": "x", "b": [i]}))
        .collect();
    let b: Vec<Value> = (0..3).map(|i| json!({"seq": i * 2, "b": []})).collect();
    let (text, _) = written_by(&mut history, &a);
    assert_eq!(rows(&text).unwrap().collect::<Vec<_>>(), a);
    let (text, _) = written_by(&mut history, &b);
    assert_eq!(rows(&text).unwrap().collect::<Vec<_>>(), b);
    assert!(!String::from_utf8(text).unwrap().contains("only_a"));
    assert_eq!(history.take(), (None, 0), "nothing added since");
}

#[test]
fn every_report_reads_back_as_it_was() {
    let mut reports = Vec::new();
    for i in 0..40u64 {
        let mut r = json!({
            "node": "node-a",
            "seq": (i + 1).to_string(),
            "uptime": 1000 + 10 * i,
            "bytes": ((i * 7919) % 13 * 4096).to_string(),
            "psi": {"avg10": i as f64 / 7.0, "avg60": 0.25},
            "text": format!("line \"{i}\" ünï\n\ttab"),
            "negative": -(i as i64) * 3,
            "pressure": {},
            "tags": [],
            "flag": i % 2 == 0,
            "nothing": null,
            // a jump no i64 step holds, back and forth
            "limit": if i % 5 == 0 { u64::MAX.to_string() } else { "0".to_owned() },
            // read back exactly (serde_json's float_roundtrip; found by fuzz/bundle_history)
            "huge": 2.0000000000000007e72 * i as f64,
            "zeros": if i % 3 == 0 { "007" } else { "0" },
            "processes": (0..(i % 4)).map(|p| json!({"pid": p, "name": format!("p{p}")})).collect::<Vec<_>>(),
        });
        if i % 6 == 0 {
            r["sometimes"] = json!({"deep": [1, {"x": "y"}]});
        }
        if i > 20 {
            r["psi"]["late"] = json!(i);
        }
        reports.push(r);
    }
    let (text, _) = written(&reports, None);
    let read = rows(&text).unwrap();
    assert_eq!(read.len(), 40);
    let back: Vec<Value> = read.collect();
    assert_eq!(back, reports);
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.contains(r#"{"path":["uptime"],"start":1000,"steps":[[39,10]]}"#),
        "{text}"
    );
    assert!(text.contains(r#"{"path":["node"],"runs":[[40,"node-a"]]}"#));
    assert!(text.contains(r#"{"path":["limit"],"runs":[[1,"18446744073709551615"],[4,"0"],"#));
}

#[test]
fn a_field_keeps_its_place_among_the_others() {
    let reports = [json!({"a": 1, "c": 3}), json!({"a": 1, "b": 2, "c": 3})];
    let (text, _) = written(&reports, None);
    let text = String::from_utf8(text).unwrap();
    let (a, b, c) = (
        text.find(r#"["a"]"#).unwrap(),
        text.find(r#"["b"]"#).unwrap(),
        text.find(r#"["c"]"#).unwrap(),
    );
    assert!(a < b && b < c, "{text}");
}

#[test]
fn credentials_are_redacted_value_by_value_and_counted_per_report() {
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N";
    let reports: Vec<Value> = (0..10)
        .map(|i| {
            json!({
                "env": {"DB_PASSWORD": "hunter22", "PATH": "/usr/bin"},
                "apiToken": (123_456 + i).to_string(),
                "cmdline": format!("app --token={jwt}"),
                "seq": i.to_string(),
            })
        })
        .collect();
    let redactor = Redactor::default();
    let (text, redacted) = written(&reports, Some(&redactor));
    let text = String::from_utf8(text).unwrap();
    for secret in ["hunter22", "123456", "eyJhbGci"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    assert!(text.contains("/usr/bin"));
    assert_eq!(redacted, 30, "three values in each of ten reports");
    let back: Vec<Value> = rows(text.as_bytes()).unwrap().collect();
    assert_eq!(back[3]["env"]["DB_PASSWORD"], "[REDACTED]");
    assert_eq!(back[3]["apiToken"], "[REDACTED]");
    assert_eq!(back[3]["seq"], "3");
    let (kept, _) = written(&reports, None);
    assert!(String::from_utf8(kept).unwrap().contains("hunter22"));
}

#[test]
fn evidence_named_after_a_credential_is_redacted_in_its_column() {
    // The evidence key moves between reports: a column holds a credential in some reports
    // and a plain value in others.
    let reports: Vec<Value> = (0..6)
        .map(|i| {
            let (key, text) = if i % 2 == 0 {
                ("password", format!("plainword{i}"))
            } else {
                ("mount_point", "/var/lib/kubelet".to_owned())
            };
            json!({"findings": [{"evidence": [{"key": key, "text": text}]}], "seq": i.to_string()})
        })
        .collect();
    let redactor = Redactor::default();
    let (text, redacted) = written(&reports, Some(&redactor));
    let text = String::from_utf8(text).unwrap();
    assert!(!text.contains("plainword"), "{text}");
    assert_eq!(redacted, 3);
    let back: Vec<Value> = rows(text.as_bytes()).unwrap().collect();
    assert_eq!(back[0]["findings"][0]["evidence"][0]["text"], "[REDACTED]");
    assert_eq!(
        back[1]["findings"][0]["evidence"][0]["text"],
        "/var/lib/kubelet"
    );
    assert_eq!(back[2]["findings"][0]["evidence"][0]["key"], "password");
}

#[test]
fn a_history_that_does_not_add_up_is_refused_with_its_column() {
    let bad = |text: &str| match rows(text.as_bytes()) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("accepted {text}"),
    };
    let doc =
        |columns: &str| format!(r#"{{"format":"{FORMAT}","reports":3,"columns":[{columns}]}}"#);
    assert!(
        bad(&doc(r#"{"path":["a"],"runs":[[2,1]]}"#))
            .contains("column [\"a\"]: 2 values for 3 reports")
    );
    assert!(
        bad(&doc(r#"{"path":["a"],"start":1,"steps":[1,1,1]}"#)).contains("3 values for 2 reports")
    );
    assert!(
        bad(&doc(r#"{"path":["a"],"start":"x","steps":[[2,1]]}"#))
            .contains("start is not an integer")
    );
    assert!(bad(&doc(r#"{"path":["a"],"runs":[[0,1],[3,1]]}"#)).contains("a count of 0"));
    assert!(bad(&doc(r#"{"path":["a",1000000],"runs":[[3,1]]}"#)).contains("array index"));
    assert!(bad(&doc(r#"{"path":["a"]}"#)).contains("neither runs"));
    assert!(bad(r#"{"format":"other","reports":1,"columns":[]}"#).contains("format \"other\""));
    assert!(
        bad(&format!(
            r#"{{"format":"{FORMAT}","reports":1000000000000,"columns":[]}}"#
        ))
        .contains("claimed")
    );
    assert!(bad("{\"format\":").contains("not a nodemedic.history.v1 history"));
}
