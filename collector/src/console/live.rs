//! `/console/events`: the pages' live updates, as server-sent events from the same
//! broadcasts the API's watches follow. An event only names what changed — `fleet` and
//! `node-<name>` for a finding, `incidents` and `incident-<id>` for an incident — and each
//! page fetches its own region again (htmx's `sse:<event>` triggers), so what a page
//! shows always comes from the store, filtered and redacted as the page itself is. Names
//! are gathered for [`COALESCE`] and sent once each: a burst of thousands of findings is a
//! few events. A browser that falls behind the broadcast is told to `refresh` everything.

use std::{collections::BTreeSet, convert::Infallible, time::Duration};

use axum::response::sse::{Event, KeepAlive, Sse};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::{Stream, StreamExt, wrappers::ReceiverStream};

use crate::store::writer::Events;

/// How long changes are gathered before they are sent.
pub const COALESCE: Duration = Duration::from_millis(500);
/// Names sent at most per gathering; more become one `refresh`.
const MAX_NAMES: usize = 256;

/// The event stream of one page, until the browser leaves or the collector stops.
pub fn stream(
    events: &Events,
    shutdown: tokio::sync::watch::Receiver<()>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>> + use<>> {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(names(
        events.findings.subscribe(),
        events.incidents.subscribe(),
        tx,
        shutdown,
    ));
    let events = ReceiverStream::new(rx).map(|name| Ok(Event::default().event(&name).data(name)));
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// Sends the names of what changed, each once per [`COALESCE`], until `tx` is dropped or
/// the collector stops.
async fn names(
    mut findings: broadcast::Receiver<nodemedic_proto::v1::FindingEvent>,
    mut incidents: broadcast::Receiver<nodemedic_proto::v1::IncidentEvent>,
    tx: mpsc::Sender<String>,
    mut shutdown: tokio::sync::watch::Receiver<()>,
) {
    use broadcast::error::RecvError;
    let mut pending: BTreeSet<String> = BTreeSet::new();
    let mut refresh = false;
    let mut tick = tokio::time::interval(COALESCE);
    loop {
        tokio::select! {
            f = findings.recv() => match f {
                Ok(e) => if let Some(f) = e.finding {
                    pending.insert("fleet".to_owned());
                    pending.insert(format!("node-{}", f.node));
                },
                Err(RecvError::Lagged(_)) => refresh = true,
                Err(RecvError::Closed) => return,
            },
            i = incidents.recv() => match i {
                Ok(e) => if let Some(i) = e.incident {
                    pending.insert("incidents".to_owned());
                    pending.insert(format!("incident-{}", i.id));
                    for node in &i.nodes {
                        pending.insert(format!("node-{node}"));
                    }
                },
                Err(RecvError::Lagged(_)) => refresh = true,
                Err(RecvError::Closed) => return,
            },
            _ = tick.tick() => {
                if pending.len() > MAX_NAMES {
                    refresh = true;
                }
                let batch = if refresh {
                    pending.clear();
                    vec!["refresh".to_owned()]
                } else {
                    std::mem::take(&mut pending).into_iter().collect()
                };
                refresh = false;
                for name in batch {
                    if tx.send(name).await.is_err() {
                        return;
                    }
                }
            }
            () = tx.closed() => return,
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use nodemedic_proto::v1::{Finding, FindingEvent, Incident, IncidentEvent, Severity};

    use super::*;

    fn finding(node: &str) -> FindingEvent {
        FindingEvent {
            finding: Some(Finding {
                node: node.into(),
                ..Finding::fail("disk.space", Severity::Critical, "/", "full".into())
            }),
            ..Default::default()
        }
    }

    async fn batch(rx: &mut mpsc::Receiver<String>) -> Vec<String> {
        let mut got = vec![rx.recv().await.unwrap()];
        while let Ok(Some(n)) = tokio::time::timeout(Duration::from_millis(50), rx.recv()).await {
            got.push(n);
        }
        got
    }

    #[tokio::test]
    async fn a_burst_is_named_once_and_a_lagging_page_is_told_to_refresh() {
        let events = Events {
            findings: broadcast::channel(8).0,
            incidents: broadcast::channel(8).0,
        };
        let (stop_tx, stop) = tokio::sync::watch::channel(());
        let (tx, mut rx) = mpsc::channel(64);
        let task = tokio::spawn(names(
            events.findings.subscribe(),
            events.incidents.subscribe(),
            tx,
            stop,
        ));
        tokio::time::sleep(Duration::from_millis(10)).await;
        for _ in 0..3 {
            events.findings.send(finding("web-a")).unwrap();
        }
        events.findings.send(finding("web-b")).unwrap();
        events
            .incidents
            .send(IncidentEvent {
                incident: Some(Incident {
                    id: 7,
                    nodes: vec!["web-c".into()],
                    ..Default::default()
                }),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            batch(&mut rx).await,
            [
                "fleet",
                "incident-7",
                "incidents",
                "node-web-a",
                "node-web-b",
                "node-web-c"
            ],
            "each name once, however many changes"
        );
        // More than the broadcast holds between two reads: the page refetches everything.
        for _ in 0..20 {
            events.findings.send(finding("web-a")).unwrap();
        }
        assert_eq!(batch(&mut rx).await, ["refresh"]);
        stop_tx.send(()).unwrap();
        task.await.unwrap();
    }
}
