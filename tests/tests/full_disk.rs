//! The collector's store on a small tmpfs that fills up: reports are refused with a clear
//! status (UNAVAILABLE, the store's "disk is full"), counted on /metrics, and nothing
//! already stored is lost; queries still answer; the agent keeps its reports on its spool
//! meanwhile, and when space returns they arrive, in order, each once. `/readyz` fails
//! while the store cannot write.

use std::{io::Write, time::Duration};

use nodemedic_agent::testing::FakeHost;
use nodemedic_tests::{
    CollectorProcess, Tmpfs, agent, assert_each_once, eventually, http_get, last_seq, stored_seqs,
};

const NODE: &str = "node-full";

#[test]
fn a_full_disk_refuses_reports_and_recovers_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let _data = Tmpfs::mount(&data, "8m");
    let spool = dir.path().join("spool");
    let host = FakeHost::new();
    let collector = CollectorProcess::start(&data, "127.0.0.1:0");
    let url = collector.grpc_url.clone();
    let _agent = agent(
        &url,
        NODE,
        host.root().dir(),
        &["--spool-dir", spool.to_str().unwrap()],
    );
    eventually(Duration::from_secs(30), "three reports stored", || {
        last_seq(&url, NODE).filter(|s| *s >= 3)
    });

    // Fill the store's filesystem to the last byte.
    let filler = data.join("filler");
    let mut file = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0u8; 64 << 10];
    while file
        .write_all(&chunk)
        .and_then(|()| file.sync_data())
        .is_ok()
    {}
    let small = [0u8; 512];
    while file
        .write_all(&small)
        .and_then(|()| file.sync_data())
        .is_ok()
    {}
    drop(file);

    let metrics = eventually(Duration::from_secs(30), "a refusal for the store", || {
        let (_, body) = http_get(&collector.http_addr, "/metrics");
        let body = String::from_utf8(body).unwrap();
        (nodemedic_tests::refused(&body, "store") >= 1.0).then_some(body)
    });
    assert!(metrics.contains("nodemedic_refused_total"), "{metrics}");
    // Not ready while it cannot write, saying why (a load balancer or the kubelet stops
    // sending to it); alive all the same.
    let (status, body) = http_get(&collector.http_addr, "/readyz");
    let body = String::from_utf8(body).unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("cannot write") && body.contains("full"),
        "{body}"
    );
    assert_eq!(http_get(&collector.http_addr, "/healthz").0, 200);
    // Queries still answer while writes cannot.
    let stuck = last_seq(&url, NODE).expect("the node is still readable");
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        last_seq(&url, NODE).unwrap() <= stuck + 1,
        "nothing stored on a full disk"
    );

    // Space returns: the spooled reports arrive.
    std::fs::remove_file(&filler).unwrap();
    let after = eventually(
        Duration::from_secs(60),
        "reports after space returned",
        || last_seq(&url, NODE).filter(|s| *s >= stuck + 6),
    );
    let seqs = stored_seqs(&data, NODE);
    assert_each_once(&seqs, "while the disk was full");
    let (status, body) = http_get(&collector.http_addr, "/readyz");
    assert_eq!(
        status,
        200,
        "ready again: {}",
        String::from_utf8_lossy(&body)
    );
    assert!(seqs.len() as u64 >= after);
}
