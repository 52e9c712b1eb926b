//! A collector served in-process on 127.0.0.1:0 with the tests' configuration, and the
//! agent's side of its stream driven by hand: reports as a hostile or broken node would
//! send them, and raw bytes.

use std::{path::Path, time::Duration};

use nodemedic_agent::reporter::Connection;
use nodemedic_collector::{
    server::{Bound, Config},
    validate::ReportLimits,
};
use nodemedic_proto::{
    time::{duration, timestamp},
    v1::{
        AgentMessage, CollectorMessage, Finding, Hello, NodeReport, ProbeRun, Severity,
        agent_message, collector_message, diagnostics_client::DiagnosticsClient,
    },
};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::StreamExt;
use tonic::{Code, Streaming, transport::Channel};

/// A running collector.
pub struct Running {
    /// `http://127.0.0.1:PORT` of its gRPC listener.
    pub grpc: String,
    /// Its HTTP listener.
    pub http: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

/// A collector on loopback ports the kernel picks, storing in `dir`: plaintext, no
/// tokens, the built-in runbook, a small message limit and one hour's retention.
pub fn loopback_config(dir: &Path) -> Config {
    Config {
        grpc_listen: "127.0.0.1:0".parse().unwrap(),
        http_listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_owned(),
        retention: Duration::from_secs(3600),
        silent_after: 3,
        max_message_bytes: 64 * 1024,
        limits: ReportLimits::default(),
        catalog: std::sync::Arc::new(nodemedic_collector::runbook::Catalog::builtin()),
        incidents: nodemedic_collector::incidents::IncidentConfig::default(),
        tls: None,
        token_file: None,
        alertmanager: None,
        agent_rate: Default::default(),
        cluster_view: None,
    }
}

impl Running {
    /// A collector on `dir` whose nodes are silent after `silent_after` intervals.
    pub async fn start(dir: &Path, silent_after: u32) -> Self {
        Self::start_with(dir, |c| c.silent_after = silent_after).await
    }

    /// A collector on `dir` with the tests' configuration, changed by `change`.
    pub async fn start_with(dir: &Path, change: impl FnOnce(&mut Config)) -> Self {
        let mut config = loopback_config(dir);
        change(&mut config);
        let bound = Bound::bind(config).await.unwrap();
        let grpc = format!("http://{}", bound.grpc_addr());
        let http = bound.http_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            bound
                .serve(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Running {
            grpc,
            http,
            stop: Some(stop),
            task,
        }
    }

    /// Stops it and waits until it has.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        (&mut self.task).await.unwrap();
    }

    /// A channel to its gRPC listener.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.grpc.clone())
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// A client of its query service.
    pub async fn diagnostics(&self) -> DiagnosticsClient<Channel> {
        DiagnosticsClient::new(self.channel().await)
    }

    /// The body of a plain HTTP/1.0 GET of `path` with a bearer `token` (panics unless
    /// the answer is 200).
    pub async fn http_get_with(&self, path: &str, token: &str) -> Vec<u8> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(self.http).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.0\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        let split = out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("an HTTP answer");
        let head = String::from_utf8_lossy(&out[..split]);
        assert!(
            head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
            "{head}"
        );
        out[split + 4..].to_vec()
    }

    /// A plain HTTP/1.0 GET of `path`: the whole answer, head and body.
    pub async fn http_get(&self, path: &str) -> String {
        self.http_get_headers(path, "").await
    }

    /// A GET of `path` with more header lines (each ending in `\r\n`): the whole answer.
    pub async fn http_get_headers(&self, path: &str, headers: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(self.http).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n{headers}\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }
}

/// An agent's side of one stream.
pub struct Agent {
    /// Messages to the collector.
    pub tx: mpsc::Sender<AgentMessage>,
    /// Messages from it.
    pub rx: Streaming<CollectorMessage>,
    /// The Welcome's seq.
    pub last_seq: u64,
}

/// Opens `node`'s stream, reporting every `interval`.
pub async fn connect(
    server: &Running,
    node: &str,
    interval: Duration,
) -> Result<Agent, tonic::Status> {
    let hello = Hello {
        node: node.into(),
        agent_version: "test".into(),
        capabilities: vec!["disk".into()],
        interval: Some(duration(interval)),
    };
    let c = Connection::open(server.channel().await, hello, 64).await?;
    Ok(Agent {
        tx: c.outbound,
        rx: c.inbound,
        last_seq: c.last_seq,
    })
}

/// A report of `node` with `findings` (check, severity, subject); the disk, memory and
/// system probes ran, but `failed_probes`.
pub fn report(
    node: &str,
    seq: u64,
    findings: &[(&str, Severity, &str)],
    failed_probes: &[&str],
) -> NodeReport {
    NodeReport {
        node: node.into(),
        agent_version: "test".into(),
        seq,
        collected_at: Some(timestamp(std::time::SystemTime::now())),
        findings: findings
            .iter()
            .map(|(check, s, subject)| Finding {
                node: node.into(),
                ..Finding::fail(check, *s, subject, format!("{check} on {subject}"))
            })
            .collect(),
        probes: ["disk", "memory", "system"]
            .iter()
            .map(|p| ProbeRun {
                probe: (*p).into(),
                ok: !failed_probes.contains(p),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

impl Agent {
    /// Sends a report.
    pub async fn send(&self, r: NodeReport) {
        self.tx
            .send(AgentMessage {
                kind: Some(agent_message::Kind::Report(r)),
            })
            .await
            .unwrap();
    }

    /// The next message, within 10 s.
    pub async fn next(&mut self) -> Result<CollectorMessage, tonic::Status> {
        tokio::time::timeout(Duration::from_secs(10), self.rx.next())
            .await
            .expect("an answer within 10s")
            .expect("stream open")
    }

    /// Sends and waits for the ack: (seq, duplicate).
    pub async fn report(&mut self, r: NodeReport) -> (u64, bool) {
        self.send(r).await;
        match self.next().await {
            Ok(CollectorMessage {
                kind: Some(collector_message::Kind::Ack(a)),
            }) => (a.seq, a.duplicate),
            other => panic!("expected Ack, got {other:?}"),
        }
    }
}

/// Connects once the previous stream of `node` has been released.
pub async fn reconnect(server: &Running, node: &str) -> Agent {
    for _ in 0..100 {
        match connect(server, node, Duration::from_secs(10)).await {
            Ok(a) => return a,
            Err(e) if e.code() == Code::AlreadyExists => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("{e}"),
        }
    }
    panic!("{node} still held by its old stream");
}

/// Sends raw bytes as the first message of an AgentGateway stream.
pub async fn raw_stream(server: &Running, bytes: Vec<u8>) -> tonic::Status {
    use tonic::codec::{Codec, EncodeBuf, Encoder};
    use tonic_prost::ProstCodec;
    #[derive(Default)]
    struct Raw;
    struct RawEncoder;
    impl Encoder for RawEncoder {
        type Item = Vec<u8>;
        type Error = tonic::Status;
        fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
            use bytes::BufMut;
            dst.put_slice(&item);
            Ok(())
        }
    }
    impl Codec for Raw {
        type Encode = Vec<u8>;
        type Decode = CollectorMessage;
        type Encoder = RawEncoder;
        type Decoder = <ProstCodec<CollectorMessage, CollectorMessage> as Codec>::Decoder;
        fn encoder(&mut self) -> RawEncoder {
            RawEncoder
        }
        fn decoder(&mut self) -> Self::Decoder {
            ProstCodec::<CollectorMessage, CollectorMessage>::default().decoder()
        }
    }
    let mut grpc = tonic::client::Grpc::new(server.channel().await);
    grpc.ready().await.unwrap();
    let path =
        tonic::codegen::http::uri::PathAndQuery::from_static("/nodemedic.v1.AgentGateway/Connect");
    let request = tonic::Request::new(tokio_stream::iter(vec![bytes]));
    match grpc.streaming(request, path, Raw).await {
        Err(status) => status,
        Ok(resp) => resp
            .into_inner()
            .next()
            .await
            .expect("an answer")
            .expect_err("refused"),
    }
}
