//! A bundle's `history.json` comes from whoever handed the bundle over: reading it may fail
//! but never panic or allocate without bound. And whatever JSON objects go in come back out:
//! input that is a JSON array of objects is written column by column and read back equal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nodemedic_collector::bundle::history::{History, rows};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    if let Ok(reports) = rows(data) {
        for report in reports {
            assert!(report.is_object());
        }
    }
    let Ok(Value::Array(items)) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    if items.is_empty() || !items.iter().all(Value::is_object) {
        return;
    }
    let mut history = History::new(None);
    for item in &items {
        history.add(item).expect("a JSON value serializes");
    }
    let (file, _) = history.take();
    let file = file.expect("reports were added");
    let back: Vec<Value> = rows(&file).expect("what was written reads").collect();
    assert_eq!(back, items);
});
