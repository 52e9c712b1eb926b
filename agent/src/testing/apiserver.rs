//! A stand-in for the Kubernetes API server that the real `kube` client talks to: recorded
//! objects played over HTTP on loopback, and the agent's writes (Node status patches,
//! events.k8s.io Events) recorded and applied to them.

use std::path::PathBuf;

/// A small HTTP server on loopback that plays the Kubernetes API server's list and watch
/// endpoints for pods, nodes and events (`/api/v1/{pods,nodes,events}`), with the objects
/// a test gives it (real objects recorded from clusters). Field selectors of the form
/// `a.b=value,c=value` are applied as the API server does; a watch streams what the test
/// changes after the list. The real `kube` client talks to it through a kubeconfig
/// ([`FakeApiServer::kubeconfig`]).
///
/// One object: `GET /api/v1/{kind}/{name}` of a cluster-scoped kind (nodes,
/// persistentvolumes).
///
/// Writes: `GET`/`PATCH /api/v1/nodes/{name}/status` (a strategic merge patch, with
/// `conditions` merged by their `type` and `$patch: delete` honoured, as the API server
/// does), `POST /apis/events.k8s.io/v1/namespaces/{ns}/events` and `PATCH` of one (a JSON
/// merge patch). Every write is kept ([`FakeApiServer::writes`]) and applied to the objects
/// ([`FakeApiServer::objects`]; Events under `events.k8s.io`).
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
    writes: std::sync::Mutex<Vec<Write>>,
}

/// One write request, as received.
#[derive(Debug, Clone)]
pub struct Write {
    /// `PATCH` or `POST`.
    pub method: String,
    /// The request's path.
    pub path: String,
    /// Its `content-type`.
    pub content_type: String,
    /// Its body.
    pub body: serde_json::Value,
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
            writes: std::sync::Mutex::default(),
        });
        let app = Router::new()
            .route("/api/v1/{kind}", get(api_get))
            .route(
                "/api/v1/nodes/{name}/status",
                get(node_get).patch(node_status_patch),
            )
            .route("/api/v1/{kind}/{name}", get(object_get))
            .route("/apis/{group}/{version}/{kind}", get(group_list))
            .route(
                "/apis/events.k8s.io/v1/namespaces/{ns}/events",
                axum::routing::post(event_create),
            )
            .route(
                "/apis/events.k8s.io/v1/namespaces/{ns}/events/{name}",
                axum::routing::patch(event_patch),
            )
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
        self.state.apply(kind, object);
    }
}

impl ApiState {
    fn apply(&self, kind: &str, object: serde_json::Value) {
        let id = |o: &serde_json::Value| {
            let m = &o["metadata"];
            if m["uid"].is_string() {
                m["uid"].clone()
            } else {
                m["name"].clone()
            }
        };
        let mut objects = self.lock();
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
        self.version
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let event = serde_json::json!({"type": kind_of_change, "object": object});
        let _ = self.changes.send((kind.to_owned(), event));
    }
}

impl FakeApiServer {
    /// The objects of a kind as they are now (after the writes applied to them).
    pub fn objects(&self, kind: &str) -> Vec<serde_json::Value> {
        self.state.lock().get(kind).cloned().unwrap_or_default()
    }

    /// The write requests received so far, in order.
    pub fn writes(&self) -> Vec<Write> {
        self.state
            .writes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
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
    if state.refused() {
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

/// A Kubernetes `Status` error answer.
fn status_error(code: u16, reason: &str, message: String) -> axum::response::Response {
    use axum::response::IntoResponse;
    let status = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code,
    });
    (
        axum::http::StatusCode::from_u16(code).unwrap_or(axum::http::StatusCode::BAD_REQUEST),
        [("content-type", "application/json")],
        status.to_string(),
    )
        .into_response()
}

/// The API server's 404 for `name` of `resource`.
fn not_found(resource: &str, name: &str) -> axum::response::Response {
    status_error(404, "NotFound", format!("{resource} \"{name}\" not found"))
}

fn json_answer(object: &serde_json::Value) -> axum::response::Response {
    use axum::response::IntoResponse;
    ([("content-type", "application/json")], object.to_string()).into_response()
}

impl ApiState {
    fn find(&self, kind: &str, name: &str) -> Option<serde_json::Value> {
        self.lock()
            .get(kind)?
            .iter()
            .find(|o| o["metadata"]["name"] == name)
            .cloned()
    }

    /// Records a write request; answers its body as JSON, or why it is not JSON.
    fn record(
        &self,
        method: &str,
        uri: &axum::http::Uri,
        headers: &axum::http::HeaderMap,
        body: &[u8],
    ) -> Result<serde_json::Value, String> {
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
        self.writes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Write {
                method: method.to_owned(),
                path: uri.path().to_owned(),
                content_type,
                body: body.clone(),
            });
        Ok(body)
    }

    fn refused(&self) -> bool {
        self.refuse_next
            .fetch_update(
                std::sync::atomic::Ordering::SeqCst,
                std::sync::atomic::Ordering::SeqCst,
                |n| n.checked_sub(1),
            )
            .is_ok()
    }
}

/// The keys by which the API server merges lists in a strategic merge patch (the ones the
/// agent's patches touch).
const MERGE_KEYS: &[(&str, &str)] = &[("conditions", "type"), ("addresses", "type")];

/// Applies a strategic merge patch to `target` (objects merged, `null` deletes a key, lists
/// with a merge key merged item by item, `$patch: delete` removing an item, other lists
/// replaced).
pub fn strategic_merge(target: &mut serde_json::Value, patch: &serde_json::Value) {
    use serde_json::Value;
    let (Value::Object(target), Value::Object(patch)) = (&mut *target, patch) else {
        *target = patch.clone();
        return;
    };
    for (key, value) in patch {
        let merge_key = MERGE_KEYS.iter().find(|(k, _)| k == key).map(|(_, m)| *m);
        match (value, merge_key) {
            (Value::Null, _) => {
                target.remove(key);
            }
            (Value::Array(items), Some(merge_key)) => {
                let list = target
                    .entry(key.clone())
                    .or_insert_with(|| Value::Array(vec![]));
                if !list.is_array() {
                    *list = Value::Array(vec![]);
                }
                let Value::Array(list) = list else {
                    unreachable!("made an array above")
                };
                for item in items {
                    let id = &item[merge_key];
                    let at = list.iter().position(|o| &o[merge_key] == id);
                    if item["$patch"] == "delete" {
                        if let Some(at) = at {
                            list.remove(at);
                        }
                        continue;
                    }
                    match at {
                        Some(at) => strategic_merge(&mut list[at], item),
                        None => list.push(item.clone()),
                    }
                }
            }
            (Value::Object(_), _) => {
                strategic_merge(target.entry(key.clone()).or_insert(Value::Null), value);
            }
            _ => {
                target.insert(key.clone(), value.clone());
            }
        }
    }
}

/// Applies a JSON merge patch (RFC 7386) to `target`.
pub fn merge_patch(target: &mut serde_json::Value, patch: &serde_json::Value) {
    use serde_json::Value;
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let Value::Object(target) = target else {
        unreachable!("made an object above")
    };
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// `GET /apis/{group}/{version}/{kind}`: a list of a custom resource (cert-manager's
/// `certificates`), kept under its plural like the core kinds.
async fn group_list(
    state: axum::extract::State<std::sync::Arc<ApiState>>,
    axum::extract::Path((_, _, kind)): axum::extract::Path<(String, String, String)>,
    query: axum::extract::Query<std::collections::BTreeMap<String, String>>,
) -> axum::response::Response {
    api_get(state, axum::extract::Path(kind), query).await
}

/// `GET /api/v1/{kind}/{name}` of a cluster-scoped object (nodes, persistentvolumes).
async fn object_get(
    axum::extract::State(state): axum::extract::State<std::sync::Arc<ApiState>>,
    axum::extract::Path((kind, name)): axum::extract::Path<(String, String)>,
) -> axum::response::Response {
    match state.find(&kind, &name) {
        Some(object) => json_answer(&object),
        None => not_found(&kind, &name),
    }
}

async fn node_get(
    axum::extract::State(state): axum::extract::State<std::sync::Arc<ApiState>>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> axum::response::Response {
    match state.find("nodes", &name) {
        Some(node) => json_answer(&node),
        None => not_found("nodes", &name),
    }
}

async fn node_status_patch(
    axum::extract::State(state): axum::extract::State<std::sync::Arc<ApiState>>,
    axum::extract::Path(name): axum::extract::Path<String>,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let patch = match state.record("PATCH", &uri, &headers, &body) {
        Ok(patch) => patch,
        Err(e) => return status_error(400, "BadRequest", e),
    };
    if state.refused() {
        return status_error(
            403,
            "Forbidden",
            format!(
                "nodes \"{name}\" is forbidden: User \"system:serviceaccount:nodemedic:agent\" cannot patch resource \"nodes/status\""
            ),
        );
    }
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if content_type != "application/strategic-merge-patch+json" {
        return status_error(
            415,
            "UnsupportedMediaType",
            format!("{content_type} is not the patch type the agent sends"),
        );
    }
    let Some(mut node) = state.find("nodes", &name) else {
        return not_found("nodes", &name);
    };
    // Only the status subresource changes.
    if let Some(status) = patch.get("status") {
        strategic_merge(&mut node["status"], status);
    }
    state.apply("nodes", node.clone());
    json_answer(&node)
}

async fn event_create(
    axum::extract::State(state): axum::extract::State<std::sync::Arc<ApiState>>,
    axum::extract::Path(ns): axum::extract::Path<String>,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let mut event = match state.record("POST", &uri, &headers, &body) {
        Ok(event) => event,
        Err(e) => return status_error(400, "BadRequest", e),
    };
    if state.refused() {
        return status_error(403, "Forbidden", "events.events.k8s.io is forbidden".into());
    }
    let name = event["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if name.is_empty() || event["eventTime"].is_null() || event["reportingController"].is_null() {
        return status_error(
            422,
            "Invalid",
            "an Event needs a name, eventTime and reportingController".into(),
        );
    }
    if state.find("events.k8s.io", &name).is_some() {
        return status_error(
            409,
            "AlreadyExists",
            format!("events.events.k8s.io \"{name}\" already exists"),
        );
    }
    event["metadata"]["namespace"] = serde_json::json!(ns);
    event["metadata"]["uid"] = serde_json::json!(format!("uid-{name}"));
    state.apply("events.k8s.io", event.clone());
    json_answer(&event)
}

async fn event_patch(
    axum::extract::State(state): axum::extract::State<std::sync::Arc<ApiState>>,
    axum::extract::Path((_ns, name)): axum::extract::Path<(String, String)>,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let patch = match state.record("PATCH", &uri, &headers, &body) {
        Ok(patch) => patch,
        Err(e) => return status_error(400, "BadRequest", e),
    };
    let Some(mut event) = state.find("events.k8s.io", &name) else {
        return not_found("events.events.k8s.io", &name);
    };
    merge_patch(&mut event, &patch);
    state.apply("events.k8s.io", event.clone());
    json_answer(&event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_strategic_merge_merges_conditions_by_type_and_deletes_on_request() {
        let mut status = serde_json::json!({"conditions": [
            {"type": "Ready", "status": "True"},
            {"type": "Old", "status": "True"},
            {"type": "DiskFilling", "status": "False"},
        ], "capacity": {"cpu": "2"}});
        strategic_merge(
            &mut status,
            &serde_json::json!({"conditions": [
                {"type": "DiskFilling", "status": "True"},
                {"type": "Old", "$patch": "delete"},
                {"type": "New", "status": "False"},
            ]}),
        );
        assert_eq!(
            status,
            serde_json::json!({"conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "DiskFilling", "status": "True"},
                {"type": "New", "status": "False"},
            ], "capacity": {"cpu": "2"}})
        );
    }
}
