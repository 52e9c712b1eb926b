//! A stand-in for the Kubernetes API server that the real `kube` client talks to: recorded
//! objects played over HTTP on loopback.

use std::path::PathBuf;

/// A small HTTP server on loopback that plays the Kubernetes API server's list and watch
/// endpoints for pods, nodes and events (`/api/v1/{pods,nodes,events}`), with the objects
/// a test gives it (real objects recorded from clusters). Field selectors of the form
/// `a.b=value,c=value` are applied as the API server does; a watch streams what the test
/// changes after the list. The real `kube` client talks to it through a kubeconfig
/// ([`FakeApiServer::kubeconfig`]).
pub struct FakeApiServer {
    addr: std::net::SocketAddr,
    state: std::sync::Arc<ApiState>,
    task: tokio::task::JoinHandle<()>,
}

struct ApiState {
    objects: std::sync::Mutex<std::collections::BTreeMap<String, Vec<serde_json::Value>>>,
    changes: tokio::sync::broadcast::Sender<(String, serde_json::Value)>,
    version: std::sync::atomic::AtomicU64,
    /// Requests answered 403 Forbidden before the real answer (RBAC not yet in place).
    refuse_next: std::sync::atomic::AtomicU32,
}

impl FakeApiServer {
    /// Starts serving on 127.0.0.1 on the current tokio runtime, with no objects.
    pub async fn start() -> Self {
        use axum::{Router, routing::get};
        let (changes, _) = tokio::sync::broadcast::channel(1024);
        let state = std::sync::Arc::new(ApiState {
            objects: std::sync::Mutex::default(),
            changes,
            version: std::sync::atomic::AtomicU64::new(1),
            refuse_next: std::sync::atomic::AtomicU32::new(0),
        });
        let app = Router::new()
            .route("/api/v1/{kind}", get(api_get))
            .with_state(std::sync::Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake API server");
        let addr = listener.local_addr().expect("its address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeApiServer { addr, state, task }
    }

    /// Sets the objects of a kind (`pods`, `nodes`, `events`) a list returns.
    pub fn set(&self, kind: &str, items: Vec<serde_json::Value>) {
        self.state.lock().insert(kind.to_owned(), items);
    }

    /// Adds or replaces (by `metadata.uid`, else name) an object and tells the watches.
    pub fn apply(&self, kind: &str, object: serde_json::Value) {
        let id = |o: &serde_json::Value| {
            let m = &o["metadata"];
            if m["uid"].is_string() {
                m["uid"].clone()
            } else {
                m["name"].clone()
            }
        };
        let mut objects = self.state.lock();
        let items = objects.entry(kind.to_owned()).or_default();
        let kind_of_change = match items.iter_mut().find(|o| id(o) == id(&object)) {
            Some(existing) => {
                *existing = object.clone();
                "MODIFIED"
            }
            None => {
                items.push(object.clone());
                "ADDED"
            }
        };
        drop(objects);
        self.state
            .version
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let event = serde_json::json!({"type": kind_of_change, "object": object});
        let _ = self.state.changes.send((kind.to_owned(), event));
    }

    /// Answers the next `n` requests 403 Forbidden, as an API server does to a service
    /// account without its RBAC rules.
    pub fn refuse_next(&self, n: u32) {
        self.state
            .refuse_next
            .store(n, std::sync::atomic::Ordering::SeqCst);
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Writes a kubeconfig pointing at the server into `dir`, and answers its path.
    pub fn kubeconfig(&self, dir: &std::path::Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n\
                 users:\n- name: agent\n  user:\n    token: test-token\n\
                 contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: agent\n\
                 current-context: fake\n",
                self.url()
            ),
        )
        .expect("write kubeconfig");
        path
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ApiState {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<String, Vec<serde_json::Value>>> {
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `a.b=value,c=value` against an object; a missing field is "".
fn selected(object: &serde_json::Value, selector: &str) -> bool {
    selector.split(',').filter(|s| !s.is_empty()).all(|term| {
        let (path, want) = term.split_once('=').unwrap_or((term, ""));
        let mut value = object;
        for part in path.split('.') {
            value = &value[part];
        }
        value.as_str().unwrap_or_default() == want
    })
}

async fn api_get(
    axum::extract::State(state): axum::extract::State<std::sync::Arc<ApiState>>,
    axum::extract::Path(kind): axum::extract::Path<String>,
    axum::extract::Query(query): axum::extract::Query<std::collections::BTreeMap<String, String>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    use futures::StreamExt;
    let refused = state
        .refuse_next
        .fetch_update(
            std::sync::atomic::Ordering::SeqCst,
            std::sync::atomic::Ordering::SeqCst,
            |n| n.checked_sub(1),
        )
        .is_ok();
    if refused {
        let status = serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("{kind} is forbidden: User \"system:serviceaccount:nodemedic:agent\" cannot list resource \"{kind}\" in API group \"\" at the cluster scope"),
            "reason": "Forbidden", "details": {"kind": kind}, "code": 403,
        });
        return (
            axum::http::StatusCode::FORBIDDEN,
            [("content-type", "application/json")],
            status.to_string(),
        )
            .into_response();
    }
    let selector = query.get("fieldSelector").cloned().unwrap_or_default();
    let watch = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    let version = state
        .version
        .load(std::sync::atomic::Ordering::SeqCst)
        .to_string();
    if watch {
        let changes = tokio_stream::wrappers::BroadcastStream::new(state.changes.subscribe());
        let lines = changes.filter_map(move |change| {
            let selector = selector.clone();
            let kind = kind.clone();
            async move {
                let (k, event) = change.ok()?;
                (k == kind && selected(&event["object"], &selector))
                    .then(|| Ok::<_, std::convert::Infallible>(format!("{event}\n")))
            }
        });
        return axum::response::Response::builder()
            .header("content-type", "application/json")
            .body(axum::body::Body::from_stream(lines))
            .expect("a response");
    }
    let items: Vec<serde_json::Value> = state
        .lock()
        .get(&kind)
        .map(|items| {
            items
                .iter()
                .filter(|o| selected(o, &selector))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let list_kind = match kind.as_str() {
        "pods" => "PodList",
        "nodes" => "NodeList",
        "events" => "EventList",
        _ => "List",
    };
    let body = serde_json::json!({
        "kind": list_kind,
        "apiVersion": "v1",
        "metadata": {"resourceVersion": version},
        "items": items,
    });
    ([("content-type", "application/json")], body.to_string()).into_response()
}
