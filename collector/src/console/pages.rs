//! The console's handlers: each checks the caller, reads the store on a blocking thread,
//! and renders its template — whole, or only its live region when htmx asks
//! (`HX-Request`).

use std::time::Instant;

use askama::Template;
use axum::{
    Form,
    extract::{ConnectInfo, Path, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
};
use nodemedic_proto::v1::{FindingState, IncidentState};
use serde::Deserialize;

use super::{
    Console, assets,
    fleet::{self, FleetQuery, FleetRow},
    live, series, session,
    views::{self, ChartView, DnsRow, FindingView, IncidentRow, IncidentView, MountRow},
};
use crate::{
    auth::{Caller, Role},
    listener::Peer,
    query::for_caller,
    store::{FindingFilter, IncidentFilter, Reader, StoreError},
    validate,
};

/// The policy of every console page: scripts and styles from the collector only.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
/// The login page's: its one inline stylesheet, nothing else.
const LOGIN_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// What every page's frame shows.
struct Layout {
    caller: String,
    role: &'static str,
    operator: bool,
    version: &'static str,
    nav: &'static str,
}

impl Layout {
    fn new(caller: &Caller, nav: &'static str) -> Self {
        Layout {
            caller: caller.name.clone(),
            role: caller.role.as_str(),
            operator: caller.role == Role::Operator,
            version: assets::VERSION,
            nav,
        }
    }
}

/// The bundle form's fixed part.
struct BundleForm {
    nodes: Vec<String>,
    since: &'static str,
    incidents_only: bool,
}

fn now() -> i64 {
    nodemedic_proto::time::unix_millis(std::time::SystemTime::now())
}

/// Whether htmx asks for the live region only.
fn partial(headers: &HeaderMap) -> bool {
    headers.get("hx-request").is_some_and(|v| v == "true")
}

fn html(status: StatusCode, body: String, csp: &'static str) -> Response {
    (
        status,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(csp),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("same-origin"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
        .into_response()
}

fn render(t: &impl Template) -> Response {
    match t.render() {
        Ok(body) => html(StatusCode::OK, body, CSP),
        Err(e) => {
            tracing::error!(message = "A console page failed to render.", error = %e);
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the page failed to render: {e}\n"),
            )
                .into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "console/login.html")]
struct LoginPage<'a> {
    style: &'static str,
    reason: String,
    next: &'a str,
}

#[derive(Template)]
#[template(path = "console/error.html")]
struct ErrorPage {
    layout: Layout,
    title: String,
    message: String,
}

fn error_page(caller: &Caller, status: StatusCode, title: &str, message: String) -> Response {
    let page = ErrorPage {
        layout: Layout::new(caller, ""),
        title: title.to_owned(),
        message,
    };
    let mut r = render(&page);
    *r.status_mut() = status;
    r
}

/// The page for a store that cannot be read now (a full disk, a locked or corrupt file).
fn unreadable(caller: &Caller, why: String) -> Response {
    error_page(
        caller,
        StatusCode::SERVICE_UNAVAILABLE,
        "The store cannot be read",
        why,
    )
}

/// The caller, or the refusal: the login form for the page at `path` (back there after
/// login), plain text for htmx and the event stream (`path` empty).
fn viewer(
    c: &Console,
    headers: &HeaderMap,
    peer: &Peer,
    path: &str,
) -> Result<Caller, Box<Response>> {
    session::authorize(&c.auth, "GET /console", Role::Viewer, headers, peer).map_err(|denied| {
        if partial(headers) || path.is_empty() {
            return Box::new(session::refused_text(&denied));
        }
        let page = LoginPage {
            style: assets::stylesheet(),
            reason: format!("Log in to see the console: {denied}."),
            next: session::next_path(path),
        };
        Box::new(html(
            session::status(&denied),
            page.render().unwrap_or_default(),
            LOGIN_CSP,
        ))
    })
}

/// Runs `f` on the console's reader on a blocking thread.
async fn read<T: Send + 'static>(
    c: &Console,
    f: impl FnOnce(&Reader) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, String> {
    let reader = std::sync::Arc::clone(&c.reader);
    tokio::task::spawn_blocking(move || f(&reader))
        .await
        .map_err(|e| format!("the read failed: {e}"))?
        .map_err(|e| e.to_string())
}

/// `GET /console`: to the fleet page.
pub async fn to_fleet() -> Redirect {
    Redirect::permanent("/console/")
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
    #[serde(default)]
    next: String,
}

/// `POST /console/login`: the token checked as any request's, then kept in a cookie.
pub async fn login(
    State(c): State<Console>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = session::next_path(&form.next).to_owned();
    let refuse = |status: StatusCode, reason: String| {
        let page = LoginPage {
            style: assets::stylesheet(),
            reason,
            next: &next,
        };
        html(status, page.render().unwrap_or_default(), LOGIN_CSP)
    };
    // Another site's form must not log a browser in with the other site's token.
    let same_origin = match (headers.get(header::ORIGIN), headers.get(header::HOST)) {
        (Some(origin), Some(host)) => origin
            .to_str()
            .ok()
            .and_then(|o| o.split_once("://"))
            .is_some_and(|(_, o)| Some(o) == host.to_str().ok()),
        (None, _) => true,
        _ => false,
    };
    if !same_origin {
        return refuse(
            StatusCode::FORBIDDEN,
            "A login from another site's page is refused.".into(),
        );
    }
    let token = form.token.trim();
    if !session::cookie_safe(token) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "That is not a token: tokens are one word of letters and digits.".into(),
        );
    }
    let mut presented = headers.clone();
    presented.remove(header::COOKIE);
    let bearer = format!("Bearer {token}");
    presented.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&bearer).expect("a cookie-safe token is a header value"),
    );
    match session::authorize(
        &c.auth,
        "POST /console/login",
        Role::Viewer,
        &presented,
        &peer,
    ) {
        Ok(caller) => {
            tracing::info!(message = "Console login.", caller = %caller.name, source = %peer.addr.ip());
            let mut r = Redirect::to(&next).into_response();
            r.headers_mut()
                .insert(header::SET_COOKIE, session::set_cookie(Some(token), c.tls));
            r
        }
        Err(denied) => refuse(
            session::status(&denied),
            format!("Not logged in: {denied}."),
        ),
    }
}

/// `POST /console/logout`: the cookie forgotten.
pub async fn logout(State(c): State<Console>) -> Response {
    let mut r = Redirect::to("/console/").into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, session::set_cookie(None, c.tls));
    r
}

/// `GET /console/events`: the live updates.
pub async fn events(
    State(c): State<Console>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
) -> Response {
    match viewer(&c, &headers, &peer, "") {
        Ok(_) => live::stream(&c.events, c.shutdown.clone()).into_response(),
        Err(r) => *r,
    }
}

/// `GET /console/assets/{file}`.
pub async fn asset(
    State(c): State<Console>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    Path(file): Path<String>,
) -> Response {
    match session::authorize(&c.auth, "GET /console", Role::Viewer, &headers, &peer) {
        Ok(_) => assets::serve(&file),
        Err(denied) => session::refused_text(&denied),
    }
}

#[derive(Template)]
#[template(path = "console/fleet.html", blocks = ["live"])]
struct FleetPage {
    layout: Layout,
    bundle: BundleForm,
    query: FleetQuery,
    state: &'static str,
    sort: &'static str,
    severities: [(&'static str, &'static str); 4],
    states: [(&'static str, &'static str); 3],
    sorts: [(&'static str, &'static str); 3],
    page: fleet::FleetPage,
    rows: Vec<RowView>,
    this_page: String,
    prev_page: String,
    next_page: String,
    render_ms: String,
}

struct RowView {
    name: String,
    severity: &'static str,
    open: [u32; 3],
    connected: bool,
    last_ago: String,
    last_iso: String,
    version: String,
}

/// `GET /console/?q=&severity=&state=&sort=&page=`: the fleet.
pub async fn fleet(
    State(c): State<Console>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    query: Result<Query<FleetQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let started = Instant::now();
    let caller = match viewer(&c, &headers, &peer, "/console/") {
        Ok(caller) => caller,
        Err(r) => return *r,
    };
    let query = match query {
        Ok(Query(q)) => q,
        Err(e) => {
            return error_page(
                &caller,
                StatusCode::BAD_REQUEST,
                "Bad filter",
                e.body_text(),
            );
        }
    };
    let min = match query.min_severity() {
        Ok(m) => m,
        Err(e) => return error_page(&caller, StatusCode::BAD_REQUEST, "Bad filter", e),
    };
    let rows = match read(&c, |r| r.nodes()).await {
        Ok(rows) => rows,
        Err(e) => {
            return unreadable(&caller, e);
        }
    };
    let rows: Vec<FleetRow> = rows
        .into_iter()
        .map(|row| {
            let connected = c.registry.is_connected(&row.name);
            FleetRow::new(row, connected)
        })
        .collect();
    let page = fleet::page(rows, &query, min);
    let now = now();
    let views = page
        .rows
        .iter()
        .map(|r| RowView {
            name: r.name.clone(),
            severity: views::severity_word(r.worst),
            open: r.open,
            connected: r.connected,
            last_ago: r
                .last_report
                .map_or_else(|| "never".into(), |t| views::ago(t, now)),
            last_iso: r.last_report.map(views::clock).unwrap_or_default(),
            version: r.agent_version.clone(),
        })
        .collect();
    let t = FleetPage {
        layout: Layout::new(&caller, "fleet"),
        bundle: BundleForm {
            nodes: Vec::new(),
            since: "",
            incidents_only: false,
        },
        state: match query.state {
            fleet::Connection::All => "all",
            fleet::Connection::Connected => "connected",
            fleet::Connection::Silent => "silent",
        },
        sort: match query.sort {
            fleet::Sort::Severity => "severity",
            fleet::Sort::Name => "name",
            fleet::Sort::LastReport => "last_report",
        },
        severities: [
            ("", "any"),
            ("info", "info"),
            ("warning", "warning"),
            ("critical", "critical"),
        ],
        states: [
            ("all", "any"),
            ("connected", "connected"),
            ("silent", "silent"),
        ],
        sorts: [
            ("severity", "worst first"),
            ("name", "name"),
            ("last_report", "longest silent first"),
        ],
        this_page: query.with_page(page.page),
        prev_page: query.with_page(page.page.saturating_sub(1).max(1)),
        next_page: query.with_page(page.page + 1),
        rows: views,
        page,
        query,
        render_ms: format!("{:.1}", started.elapsed().as_secs_f64() * 1000.0),
    };
    if partial(&headers) {
        render(&t.as_live())
    } else {
        render(&t)
    }
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct IncidentsQuery {
    state: String,
}

#[derive(Template)]
#[template(path = "console/incidents.html", blocks = ["live"])]
struct IncidentsPage {
    layout: Layout,
    state: String,
    incidents: Vec<IncidentRow>,
    truncated: bool,
}

/// Incidents a page lists at most.
const INCIDENTS_SHOWN: usize = 500;

/// `GET /console/incidents?state=open|resolved`: open first, newest first.
pub async fn incidents(
    State(c): State<Console>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    query: Result<Query<IncidentsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let caller = match viewer(&c, &headers, &peer, "/console/incidents") {
        Ok(caller) => caller,
        Err(r) => return *r,
    };
    let Ok(Query(q)) = query else {
        return error_page(
            &caller,
            StatusCode::BAD_REQUEST,
            "Bad filter",
            "known parameters: state=open|resolved".into(),
        );
    };
    let state = match q.state.as_str() {
        "" => IncidentState::Unspecified,
        "open" => IncidentState::Open,
        "resolved" => IncidentState::Resolved,
        other => {
            return error_page(
                &caller,
                StatusCode::BAD_REQUEST,
                "Bad filter",
                format!("state={other:?}: expected open or resolved"),
            );
        }
    };
    let filter = IncidentFilter {
        state,
        limit: INCIDENTS_SHOWN,
        ..Default::default()
    };
    let (list, truncated) = match read(&c, move |r| r.incidents(&filter)).await {
        Ok(x) => x,
        Err(e) => {
            return unreadable(&caller, e);
        }
    };
    let now = now();
    let t = IncidentsPage {
        layout: Layout::new(&caller, "incidents"),
        incidents: list
            .iter()
            .map(|i| IncidentRow::new(&for_caller(&caller, i.clone()), now))
            .collect(),
        state: q.state,
        truncated,
    };
    if partial(&headers) {
        render(&t.as_live())
    } else {
        render(&t)
    }
}

#[derive(Template)]
#[template(path = "console/incident.html", blocks = ["live"])]
struct IncidentPage {
    layout: Layout,
    bundle: BundleForm,
    i: IncidentView,
}

/// `GET /console/incidents/{id}`.
pub async fn incident(
    State(c): State<Console>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let caller = match viewer(&c, &headers, &peer, &format!("/console/incidents/{id}")) {
        Ok(caller) => caller,
        Err(r) => return *r,
    };
    let Ok(id) = id.parse::<u64>() else {
        return error_page(
            &caller,
            StatusCode::BAD_REQUEST,
            "No such incident",
            format!("{id:?} is not an incident number"),
        );
    };
    let found = match read(&c, move |r| r.incident(id)).await {
        Ok(found) => found,
        Err(e) => {
            return unreadable(&caller, e);
        }
    };
    let Some(i) = found else {
        return error_page(
            &caller,
            StatusCode::NOT_FOUND,
            "No such incident",
            format!(
                "incident #{id} is not stored (resolved incidents are kept for the retention period)"
            ),
        );
    };
    let i = IncidentView::new(for_caller(&caller, i), now());
    let t = IncidentPage {
        layout: Layout::new(&caller, "incidents"),
        bundle: BundleForm {
            nodes: i.nodes.clone(),
            since: "",
            incidents_only: true,
        },
        i,
    };
    if partial(&headers) {
        render(&t.as_live())
    } else {
        render(&t)
    }
}

/// The node page's windows.
const WINDOWS: [&str; 4] = ["1h", "6h", "24h", "7d"];

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct NodeQuery {
    window: String,
}

struct NodeView {
    name: String,
    severity: &'static str,
    connected: bool,
    version: String,
    last_report: String,
    first_seen: String,
    facts: Vec<(String, String)>,
    findings: Vec<FindingView>,
    incidents: Vec<(u64, String)>,
    reports: usize,
    charts: Vec<ChartView>,
    mounts: Vec<MountRow>,
    dns: Vec<DnsRow>,
}

#[derive(Template)]
#[template(path = "console/node.html", blocks = ["live"])]
struct NodePage {
    layout: Layout,
    bundle: BundleForm,
    n: NodeView,
    window: String,
    windows: [&'static str; 4],
}

/// `GET /console/nodes/{name}?window=6h`.
pub async fn node(
    State(c): State<Console>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    Path(name): Path<String>,
    query: Result<Query<NodeQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let caller = match viewer(&c, &headers, &peer, &format!("/console/nodes/{name}")) {
        Ok(caller) => caller,
        Err(r) => return *r,
    };
    if let Err(e) = validate::node_name(&name) {
        return error_page(
            &caller,
            StatusCode::BAD_REQUEST,
            "No such node",
            e.to_string(),
        );
    }
    let window = match query {
        Ok(Query(q)) if q.window.is_empty() => "6h".to_owned(),
        Ok(Query(q)) if WINDOWS.contains(&q.window.as_str()) => q.window,
        _ => {
            return error_page(
                &caller,
                StatusCode::BAD_REQUEST,
                "Bad window",
                format!("known windows: {}", WINDOWS.join(", ")),
            );
        }
    };
    let span = humantime::parse_duration(&window).expect("the windows parse");
    let now = now();
    let w = series::Window::new(now - span.as_millis() as i64, now);
    let node = name.clone();
    let read = read(&c, move |r| {
        let Some((row, latest)) = r.node(&node)? else {
            return Ok(None);
        };
        let (findings, _) = r.findings(&FindingFilter {
            nodes: vec![node.clone()],
            state: FindingState::Open,
            limit: 500,
            ..Default::default()
        })?;
        let (incidents, _) = r.incidents(&IncidentFilter {
            nodes: vec![node.clone()],
            state: IncidentState::Open,
            limit: 50,
            ..Default::default()
        })?;
        let mut history = series::Gatherer::new(w);
        r.each_report(&node, w.start, |report| {
            history.report(report);
            Ok::<_, StoreError>(())
        })?;
        Ok(Some((row, latest, findings, incidents, history.finish())))
    })
    .await;
    let (row, latest, findings, incidents, history) = match read {
        Ok(Some(x)) => x,
        Ok(None) => {
            return error_page(
                &caller,
                StatusCode::NOT_FOUND,
                "No such node",
                format!("no node {name:?} has reported to this collector"),
            );
        }
        Err(e) => {
            return unreadable(&caller, e);
        }
    };
    let charts = match views::charts(&history, w, now) {
        Ok(charts) => charts,
        Err(e) => {
            return error_page(
                &caller,
                StatusCode::INTERNAL_SERVER_ERROR,
                "A chart failed",
                e.to_string(),
            );
        }
    };
    let latest = latest.map(|r| for_caller(&caller, r));
    let (facts, mounts, dns) = latest.as_ref().map(views::latest).unwrap_or_default();
    let n = NodeView {
        severity: views::severity_word(row.worst()),
        connected: c.registry.is_connected(&row.name),
        version: row.agent_version.clone(),
        last_report: views::when(row.last_report, now),
        first_seen: views::when(Some(row.first_seen), now),
        facts,
        findings: findings
            .iter()
            .map(|f| FindingView::new(&for_caller(&caller, f.clone()), now))
            .collect(),
        incidents: incidents
            .into_iter()
            .map(|i| (i.id, for_caller(&caller, i).title))
            .collect(),
        reports: history.reports,
        charts,
        mounts,
        dns,
        name: row.name,
    };
    let t = NodePage {
        layout: Layout::new(&caller, "fleet"),
        bundle: BundleForm {
            nodes: vec![n.name.clone()],
            since: "",
            incidents_only: false,
        },
        n,
        window,
        windows: WINDOWS,
    };
    if partial(&headers) {
        render(&t.as_live())
    } else {
        render(&t)
    }
}
