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
use tokio_stream::{Stream, wrappers::ReceiverStream};

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
    tokio::spawn(forward(
        events.findings.subscribe(),
        events.incidents.subscribe(),
        tx,
        shutdown,
    ));
    Sse::new(ReceiverStream::new(rx)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

async fn forward(
    mut findings: broadcast::Receiver<nodemedic_proto::v1::FindingEvent>,
    mut incidents: broadcast::Receiver<nodemedic_proto::v1::IncidentEvent>,
    tx: mpsc::Sender<Result<Event, Infallible>>,
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
                let batch: Vec<Event> = if refresh {
                    vec![Event::default().event("refresh").data("lagged")]
                } else {
                    pending.iter().map(|n| Event::default().event(n).data(n)).collect()
                };
                pending.clear();
                refresh = false;
                for event in batch {
                    if tx.send(Ok(event)).await.is_err() {
                        return;
                    }
                }
            }
            () = tx.closed() => return,
            _ = shutdown.changed() => return,
        }
    }
}
