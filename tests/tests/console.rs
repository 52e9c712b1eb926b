//! The web console in a real browser: Debian's Chromium, headless, driven through
//! WebDriver (chromedriver, by fantoccini) against a real collector and a real agent.
//!
//! One scenario, in the order an on-call engineer meets it: refused without a token (the
//! pages, their assets and the event stream alike); logged in with a viewer's token; the
//! fleet page turns the node red *without a reload* when its kubelet filesystem fills; the
//! incident page shows the runbook's steps with their commands; the node page draws the
//! disk plot; the bundle form's download works with the login alone; a collector that goes
//! away is said so on the page, which reconnects when it is back; the incidents page shows
//! the incident resolving in place when the space is freed. Screenshots (light and
//! dark) are kept in `target/test-artifacts/console/`.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use fantoccini::{
    Client, ClientBuilder, Locator,
    actions::{InputSource, KeyAction, KeyActions},
    key::Key,
};
use nodemedic_agent::testing::FakeHost;
use nodemedic_tests::{
    CollectorProcess, Tmpfs, agent, free_loopback_addr, http_get, http_get_with,
};

const NODE: &str = "node-full";

/// A chromedriver on a free loopback port, stopped on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Self {
        let port = free_loopback_addr().rsplit(':').next().unwrap().to_owned();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is installed (scripts/test installs chromium-driver)");
        let addr = format!("127.0.0.1:{port}");
        // chromedriver keeps connections open, so a plain GET would wait: wait for its port.
        nodemedic_tests::eventually(Duration::from_secs(20), "chromedriver's port", || {
            std::net::TcpStream::connect(&addr).ok()
        });
        Driver {
            child,
            url: format!("http://{addr}"),
        }
    }

    /// A headless Chromium session with a fresh profile in `profile`.
    async fn browser(&self, profile: &Path) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1280,1400",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a WebDriver session in Chromium")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` until it answers `Some`, at most `within`.
async fn until<T, F: std::future::Future<Output = Option<T>>>(
    within: Duration,
    what: &str,
    mut f: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(t) = f().await {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An element's attribute, `None` while the element is not there.
async fn attr(c: &Client, css: &str, name: &str) -> Option<String> {
    c.find(Locator::Css(css))
        .await
        .ok()?
        .attr(name)
        .await
        .ok()?
}

/// The text of the element `css`.
async fn text(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Clicks the element `css`.
async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Marks the page in a way a reload would wipe (see [`not_reloaded`]).
async fn mark_page(c: &Client) {
    c.execute("window.__not_reloaded = true; return true;", vec![])
        .await
        .unwrap();
}

/// Whether the page [`mark_page`] marked is still the one shown.
async fn not_reloaded(c: &Client) -> bool {
    let kept = c
        .execute("return window.__not_reloaded === true;", vec![])
        .await
        .unwrap();
    kept == serde_json::Value::Bool(true)
}

/// Presses and releases `key`.
async fn press(c: &Client, key: Key) {
    let key: char = key.into();
    let actions = KeyActions::new("keyboard".into())
        .then(KeyAction::Down { value: key })
        .then(KeyAction::Up { value: key });
    c.perform_actions(actions).await.unwrap();
}

/// An attribute of the element that has the keyboard focus.
async fn focused(c: &Client, name: &str) -> Option<String> {
    c.active_element().await.unwrap().attr(name).await.unwrap()
}

/// Waits until the page's live-updates notice is in `state` (`live`, `offline`).
async fn live_status(c: &Client, state: &str, within: Duration, what: &str) {
    until(within, what, || async {
        (attr(c, "#live-status", "data-state").await? == state).then_some(())
    })
    .await;
}

fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts/console");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{name}: {} bytes",
        png.len()
    );
    std::fs::write(artifacts().join(name), png).unwrap();
}

fn fill(dir: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(dir.join("filler")).unwrap();
    let chunk = vec![1u8; 256 << 10];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_a_node_filling_up_live() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let tokens = dir.path().join("tokens");
    let (viewer, line) =
        nodemedic_collector::auth::new_token("vera", nodemedic_collector::auth::Role::Viewer)
            .unwrap();
    std::fs::write(&tokens, line).unwrap();
    let (grpc, http) = (free_loopback_addr(), free_loopback_addr());
    let flags = ["--insecure", "--token-file", tokens.to_str().unwrap()];
    let collector = CollectorProcess::start_on(&data, &grpc, &http, &flags);

    // The node: a 16 MiB kubelet filesystem, filled later.
    let host = FakeHost::new();
    let kubelet = host.root().path("/var/lib/kubelet");
    std::fs::create_dir_all(&kubelet).unwrap();
    let _kubelet = Tmpfs::mount(&kubelet, "16m");
    host.set_mounts(&[
        "40 21 0:91 / /var/lib/kubelet rw,relatime shared:40 - tmpfs tmpfs rw,size=16384k",
    ]);
    let _agent = agent(&collector.grpc_url, NODE, host.root().dir(), &[]);

    // Nothing but health (and metrics) without a token: not the pages, the assets, the
    // events, nor a bundle.
    for path in [
        "/console/",
        "/console/nodes/node-full",
        "/console/incidents",
        "/console/assets/console.css",
        "/console/events",
        "/api/v1/bundle",
    ] {
        let (status, body) = http_get(&collector.http_addr, path);
        assert_eq!(status, 401, "{path}: {}", String::from_utf8_lossy(&body));
        let body = String::from_utf8_lossy(&body);
        assert!(
            !body.contains("<table") && !body.contains("data-node"),
            "{path} shows nothing of the fleet: {body}"
        );
    }
    assert_eq!(http_get(&collector.http_addr, "/healthz").0, 200);

    let driver = Driver::start();
    eprintln!("console test: starting the browser");
    let c = driver.browser(&dir.path().join("profile")).await;
    eprintln!("console test: browser started");
    let base = format!("http://{}", collector.http_addr);

    // Refused in the browser too: the login form, no fleet.
    c.goto(&format!("{base}/console/")).await.unwrap();
    eprintln!("console test: login page loaded");
    let body = text(&c, "body").await;
    assert!(body.contains("Log in") && !body.contains(NODE), "{body}");
    // A wrong token is refused and says so.
    c.find(Locator::Css("input[name=token]"))
        .await
        .unwrap()
        .send_keys("0000")
        .await
        .unwrap();
    click(&c, "form button[type=submit]").await;
    until(
        Duration::from_secs(10),
        "the wrong token's refusal",
        || async {
            let text = c
                .find(Locator::Css("[role=alert]"))
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            text.contains("unknown token").then_some(())
        },
    )
    .await;
    screenshot(&c, "login-refused.png").await;
    c.find(Locator::Css("input[name=token]"))
        .await
        .unwrap()
        .send_keys(&viewer)
        .await
        .unwrap();
    click(&c, "form button[type=submit]").await;

    // The fleet: the node, not red yet, and the page live.
    let row = format!("tr[data-node=\"{NODE}\"]");
    let before = until(
        Duration::from_secs(30),
        "the node on the fleet page",
        || async {
            c.refresh().await.ok()?;
            attr(&c, &row, "data-severity").await
        },
    )
    .await;
    assert_ne!(before, "critical");
    live_status(
        &c,
        "live",
        Duration::from_secs(20),
        "the live updates to connect",
    )
    .await;
    // The keyboard: the first Tab reaches the skip link, Enter jumps to the content, and
    // the next Tab lands on the filter.
    press(&c, Key::Tab).await;
    assert_eq!(focused(&c, "class").await.as_deref(), Some("skip"));
    press(&c, Key::Enter).await;
    assert_eq!(focused(&c, "id").await.as_deref(), Some("main"));
    press(&c, Key::Tab).await;
    assert_eq!(focused(&c, "name").await.as_deref(), Some("q"));
    // A mark that a reload would wipe.
    mark_page(&c).await;

    fill(&kubelet);
    until(
        Duration::from_secs(60),
        "the node to turn red without a reload",
        || async { (attr(&c, &row, "data-severity").await? == "critical").then_some(()) },
    )
    .await;
    assert!(
        not_reloaded(&c).await,
        "the page was updated in place, not reloaded"
    );
    let badge = text(&c, &format!("{row} .badge")).await;
    assert_eq!(
        badge, "critical",
        "the severity is written, not only coloured"
    );
    screenshot(&c, "fleet-red.png").await;

    // The incident: its runbook steps, with commands to copy.
    c.goto(&format!("{base}/console/incidents")).await.unwrap();
    let href = until(
        Duration::from_secs(30),
        "an incident for the full disk",
        || async {
            c.refresh().await.ok()?;
            attr(&c, "#incidents tbody tr a", "href").await
        },
    )
    .await;
    c.goto(&format!("{base}{href}")).await.unwrap();
    let steps = c.find_all(Locator::Css("#steps > li")).await.unwrap();
    assert!(!steps.is_empty(), "the runbook's steps are shown");
    let command = text(&c, "#steps pre code").await;
    assert!(!command.trim().is_empty());
    let copy = attr(&c, "#steps button[data-copy]", "data-copy")
        .await
        .unwrap();
    assert_eq!(
        copy.trim(),
        command.trim(),
        "the copy button copies the command shown"
    );
    let nodes = text(&c, ".facts").await;
    assert!(nodes.contains(NODE), "{nodes}");
    screenshot(&c, "incident.png").await;

    // The node: its disk plot, from the store's history.
    c.goto(&format!("{base}/console/nodes/{NODE}?window=1h"))
        .await
        .unwrap();
    let lines = c
        .find_all(Locator::Css("#chart-disk svg polyline"))
        .await
        .unwrap();
    assert!(!lines.is_empty(), "the disk plot has its line");
    let legend = text(&c, "#chart-disk").await;
    assert!(legend.contains("/var/lib/kubelet"), "{legend}");
    screenshot(&c, "node-light.png").await;
    click(&c, "#theme").await;
    assert_eq!(
        attr(&c, "html", "data-theme").await.as_deref(),
        Some("dark")
    );
    assert_eq!(
        attr(&c, "#theme", "aria-pressed").await.as_deref(),
        Some("true")
    );
    screenshot(&c, "node-dark.png").await;

    // The bundle form: what it sends downloads a bundle with the login's cookie alone.
    let action = attr(&c, "form.bundle", "action").await.unwrap();
    assert!(action.ends_with("/api/v1/bundle"), "{action}");
    let hidden = attr(&c, "form.bundle input[name=node]", "value")
        .await
        .unwrap();
    assert_eq!(hidden, NODE);
    assert!(
        c.find(Locator::Css("form.bundle input[name=no_redact]"))
            .await
            .is_err(),
        "a viewer is not offered unredacted bundles"
    );
    let cookie = c
        .get_named_cookie(nodemedic_collector::console::session::COOKIE)
        .await
        .unwrap();
    assert_eq!(cookie.http_only(), Some(true));
    let cookie = format!("{}={}", cookie.name(), cookie.value());
    let (status, body) = http_get_with(
        &collector.http_addr,
        &format!("/api/v1/bundle?node={NODE}&since="),
        &format!("Cookie: {cookie}\r\n"),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let checked = nodemedic_collector::bundle::inspect(body.as_slice(), |_| true).unwrap();
    assert!(
        checked
            .files
            .keys()
            .any(|f| f.starts_with(&format!("nodes/{NODE}/"))),
        "{:?}",
        checked.files.keys()
    );

    // The incidents page follows too: space freed, the incident resolves in place.
    c.goto(&format!("{base}/console/incidents")).await.unwrap();
    let incident = format!(
        "#incidents tr[data-incident=\"{}\"]",
        href.rsplit('/').next().unwrap()
    );
    assert_eq!(
        attr(&c, &incident, "data-state").await.as_deref(),
        Some("open")
    );
    live_status(
        &c,
        "live",
        Duration::from_secs(20),
        "the incidents page to go live",
    )
    .await;
    mark_page(&c).await;
    std::fs::remove_file(kubelet.join("filler")).unwrap();
    until(
        Duration::from_secs(60),
        "the incident to resolve on the page",
        || async { (attr(&c, &incident, "data-state").await? == "resolved").then_some(()) },
    )
    .await;
    assert!(not_reloaded(&c).await, "resolved in place, not reloaded");
    screenshot(&c, "incidents-resolved.png").await;

    // The collector goes away: the page says so, and reconnects when it is back.
    collector.kill();
    live_status(
        &c,
        "offline",
        Duration::from_secs(30),
        "the page to say it is disconnected",
    )
    .await;
    let notice = text(&c, "#live-status").await;
    assert!(notice.contains("reconnecting"), "{notice}");
    screenshot(&c, "disconnected.png").await;
    let _back = CollectorProcess::start_on(&data, &grpc, &http, &flags);
    live_status(&c, "live", Duration::from_secs(60), "the page to reconnect").await;
    c.close().await.unwrap();
}

/// Bad input on the console's pages gets a clear error and status, never a panic or an
/// empty page; the login form follows only console paths and refuses other sites' forms.
#[test]
fn bad_console_input_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    let (viewer, line) =
        nodemedic_collector::auth::new_token("vera", nodemedic_collector::auth::Role::Viewer)
            .unwrap();
    std::fs::write(&tokens, line).unwrap();
    let collector = CollectorProcess::start_with(
        dir.path(),
        "127.0.0.1:0",
        &["--insecure", "--token-file", tokens.to_str().unwrap()],
    );
    let bearer = format!("Authorization: Bearer {viewer}\r\n");
    for (path, status, says) in [
        ("/console/nodes/..%2Fetc", 400, "invalid node name"),
        (
            "/console/nodes/nobody",
            404,
            "has reported to this collector",
        ),
        ("/console/nodes/nobody?window=3y", 400, "known windows"),
        ("/console/incidents/abc", 400, "not an incident number"),
        ("/console/incidents/999", 404, "#999 is not stored"),
        (
            "/console/incidents?state=sideways",
            400,
            "expected open or resolved",
        ),
        (
            "/console/?severity=loud",
            400,
            "expected critical, warning, info or any",
        ),
        ("/console/?sort=size", 400, "unknown variant"),
        ("/console/?bogus=1", 400, "unknown field"),
        ("/console/assets/passwd", 404, "no asset"),
        ("/console/?page=999999", 200, "page 1 of 1"),
    ] {
        let (got, body) = http_get_with(&collector.http_addr, path, &bearer);
        let body = String::from_utf8_lossy(&body);
        assert_eq!(got, status, "{path}: {body}");
        assert!(body.contains(says), "{path} says {says:?}: {body}");
    }

    let form = |next: &str| format!("token={viewer}&next={next}");
    let post = |headers: &str, body: &str| {
        nodemedic_tests::http_request(
            &collector.http_addr,
            "POST",
            "/console/login",
            &format!("Content-Type: application/x-www-form-urlencoded\r\n{headers}"),
            body,
        )
    };
    let (status, head, _) = post("", &form("/console/incidents"));
    assert_eq!(status, 303, "{head}");
    assert!(head.contains("location: /console/incidents"), "{head}");
    assert!(head.contains("HttpOnly; SameSite=Strict"), "{head}");
    let (status, head, _) = post("", &form("https%3A%2F%2Fevil.example%2F"));
    assert_eq!(status, 303);
    assert!(
        head.contains("location: /console/\r\n") || head.ends_with("location: /console/"),
        "only console paths: {head}"
    );
    let (status, _, body) = post("Origin: https://evil.example\r\n", &form("/console/"));
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    let (status, _, body) = post("", "token=a%3Bb");
    assert_eq!(status, 401);
    assert!(String::from_utf8_lossy(&body).contains("not a token"));
}
