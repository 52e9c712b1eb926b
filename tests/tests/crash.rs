//! A collector killed with SIGKILL in the middle of ingest loses no acknowledged report,
//! keeps its open findings open, and tells the reconnecting agent where to continue.

use std::{collections::BTreeSet, time::Duration};

use nodemedic_agent::reporter::Connection;
use nodemedic_collector::store::Reader;
use nodemedic_proto::{
    time::{duration, timestamp},
    v1::{
        AgentMessage, Finding, GetNodeRequest, Hello, NodeReport, ProbeRun, Severity,
        agent_message, collector_message, diagnostics_client::DiagnosticsClient,
    },
};
use nodemedic_tests::CollectorProcess;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

const NODE: &str = "crash-node";

fn report(seq: u64) -> NodeReport {
    NodeReport {
        node: NODE.into(),
        agent_version: "test".into(),
        seq,
        collected_at: Some(timestamp(std::time::SystemTime::now())),
        findings: vec![Finding {
            node: NODE.into(),
            ..Finding::fail(
                "disk.space",
                Severity::Critical,
                "/",
                format!("report {seq}"),
            )
        }],
        probes: vec![ProbeRun {
            probe: "disk".into(),
            ok: true,
            ..Default::default()
        }],
        ..Default::default()
    }
}

async fn open(url: &str) -> Connection {
    let channel = Channel::from_shared(url.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let hello = Hello {
        node: NODE.into(),
        agent_version: "test".into(),
        capabilities: vec![],
        interval: Some(duration(Duration::from_secs(10))),
    };
    Connection::open(channel, hello, 100_000).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_ingest_loses_no_acknowledged_report() {
    let data = tempfile::tempdir().unwrap();
    let collector = CollectorProcess::start(data.path(), "127.0.0.1:0");
    let Connection {
        outbound: tx,
        mut inbound,
        last_seq,
    } = open(&collector.grpc_url).await;
    assert_eq!(last_seq, 0);

    // Pipeline reports as fast as the collector takes them.
    let sender = tokio::spawn(async move {
        for seq in 1..=50_000 {
            if tx
                .send(AgentMessage {
                    kind: Some(agent_message::Kind::Report(report(seq))),
                })
                .await
                .is_err()
            {
                break;
            }
        }
        tx
    });
    let mut acked = BTreeSet::new();
    while let Some(Ok(message)) = inbound.next().await {
        if let Some(collector_message::Kind::Ack(ack)) = message.kind {
            acked.insert(ack.seq);
        }
        if acked.len() == 2000 {
            break;
        }
    }
    collector.kill();
    // Acks already in flight when the process died count too.
    while let Some(Ok(message)) = inbound.next().await {
        if let Some(collector_message::Kind::Ack(ack)) = message.kind {
            acked.insert(ack.seq);
        }
    }
    drop(sender.await.unwrap());
    let max_acked = *acked.last().unwrap();
    assert!(acked.len() >= 2000);

    // Restart on the same data: every acknowledged report is there.
    let collector = CollectorProcess::start(data.path(), "127.0.0.1:0");
    let stored: BTreeSet<u64> = Reader::open(data.path())
        .unwrap()
        .history(NODE, 0)
        .unwrap()
        .iter()
        .map(|r| r.seq)
        .collect();
    let lost: Vec<_> = acked.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged reports lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );

    // The open finding is still open, and the agent is told to continue above what is stored.
    let channel = Channel::from_shared(collector.grpc_url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let node = DiagnosticsClient::new(channel)
        .get_node(GetNodeRequest { name: NODE.into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(node.open_findings.len(), 1);
    assert_eq!(node.open_findings[0].check, "disk.space");
    let last_seq = open(&collector.grpc_url).await.last_seq;
    assert_eq!(last_seq, *stored.last().unwrap());
    assert!(last_seq >= max_acked);
}
