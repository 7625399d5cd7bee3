//! The dashboard in a real browser: Debian's `chromium`, headless, driven
//! through `chromedriver` (WebDriver) by fantoccini, against the real binary
//! on a real port with script projects (no containers). Plus the CSRF,
//! session and rate-limit rules over plain HTTP, where a browser would hide
//! them (a forged Origin, a replayed cookie).
//!
//! The browser test needs `chromium` and `chromium-driver`; without them it
//! says so and passes, unless `WHARF_REQUIRE_BROWSER=1` or
//! `WHARF_REQUIRE_DOCKER=1` (what CI sets) makes that a failure.
//! `DASHBOARD_SCREENSHOTS=<dir>` saves the overview at 1280 and 375 px.

// A panic in a test is a failed test: the no-panic lints are for the daemon.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::string_slice
)]

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use support::{script_project, Wharf};

const WAIT: Duration = Duration::from_secs(20);
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// `web`: `staging` deploys `main-*` pushes at once, `prod` waits for an
/// approval of `v*`. The script prints its tag, so the log shows it.
fn project() -> String {
    script_project(
        "localhost:5000/acme/web",
        "echo deploying $WHARF_TAG; sleep 0.3; echo done with $WHARF_TAG",
        "[stages.staging]\ntags = [\"main-*\"]\nauto_deploy = true\n\
         [stages.prod]\ntags = [\"v*\"]\nauto_deploy = false\n",
    )
}

async fn started() -> Wharf {
    let wharf = Wharf::start("").await;
    wharf.write_project("web", &project());
    wharf.wait_loaded("web").await;
    wharf
}

fn push_body(tag: &str) -> String {
    json!({ "image": format!("localhost:5000/acme/web:{tag}") }).to_string()
}

/// Push and return the one recorded deployment's id.
async fn push(wharf: &Wharf, tag: &str) -> String {
    let answer = wharf.push_until_accepted(&push_body(tag)).await;
    answer["deployments"][0]["id"].as_str().unwrap().to_string()
}

/// True when chromium and chromedriver are installed; otherwise prints why
/// and returns false, or panics when the environment requires the browser.
fn browser_or_skip(test: &str) -> bool {
    if Path::new(CHROMEDRIVER).exists() && Path::new(CHROMIUM).exists() {
        return true;
    }
    let why = format!(
        "{CHROMIUM} or {CHROMEDRIVER} is missing (apt-get install chromium chromium-driver)"
    );
    let required = ["WHARF_REQUIRE_BROWSER", "WHARF_REQUIRE_DOCKER"]
        .iter()
        .any(|v| std::env::var(v).as_deref() == Ok("1"));
    assert!(!required, "{test}: {why}");
    eprintln!("skipping {test}: {why}");
    false
}

/// chromedriver on a free port, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    async fn start() -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + WAIT;
        while reqwest::get(format!("{url}/status")).await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Driver { child, url }
    }

    async fn browser(&self) -> Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,1000"],
            }),
        );
        ClientBuilder::rustls()
            .unwrap()
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a chromium session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Wait until the page's text contains `text`.
async fn wait_text(browser: &Client, css: &str, text: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let found = match browser.find(Locator::Css(css)).await {
            Ok(element) => element.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if found.contains(text) {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{css} never showed {text:?}; it shows:\n{found}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Click the `<button>` with exactly this text inside `css`.
async fn click_button(browser: &Client, css: &str, text: &str) {
    let scope = browser.find(Locator::Css(css)).await.unwrap();
    let button = scope
        .find(Locator::XPath(&format!(
            ".//button[normalize-space()='{text}']"
        )))
        .await
        .unwrap_or_else(|_| panic!("no {text} button in {css}"));
    button.click().await.unwrap();
}

async fn sign_in(browser: &Client, token: &str) {
    let field = browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#token"))
        .await
        .unwrap();
    field.send_keys(token).await.unwrap();
    click_button(browser, "form", "Sign in").await;
}

/// Neither secret in the page source, the script-readable cookies or web
/// storage.
async fn assert_nothing_secret(browser: &Client, secrets: &[&str], session: &str) {
    let source = browser.source().await.unwrap();
    let readable = browser
        .execute(
            "return JSON.stringify({cookie: document.cookie, local: Object.assign({}, localStorage), session: Object.assign({}, sessionStorage)});",
            vec![],
        )
        .await
        .unwrap();
    let readable = readable.as_str().unwrap().to_string();
    assert!(
        !readable.contains(session),
        "the session cookie is readable by scripts: {readable}"
    );
    for secret in secrets {
        assert!(!source.contains(secret), "a secret is in the page source");
        assert!(
            !readable.contains(secret),
            "a secret is readable: {readable}"
        );
    }
}

#[tokio::test]
async fn the_dashboard_in_a_real_browser() {
    if !browser_or_skip("the_dashboard_in_a_real_browser") {
        return;
    }
    let wharf = started().await;
    let (secret, token) = wharf.settings();
    let driver = Driver::start().await;
    let browser = driver.browser().await;
    let base = wharf.base.clone();

    eprintln!("step: A wrong token is refused");
    // A wrong token is refused and shows no project.
    browser.goto(&format!("{base}/")).await.unwrap();
    sign_in(&browser, "not-the-token").await;
    wait_text(&browser, "main", "That is not the admin token.").await;
    assert!(browser.find(Locator::Css("#project-web")).await.is_err());

    eprintln!("step: The right one shows");
    // The right one shows the projects and their stages.
    sign_in(&browser, &token).await;
    let main = wait_text(&browser, "#project-web", "staging").await;
    assert!(main.contains("prod") && main.contains("main-*"), "{main}");
    let session = browser.get_named_cookie("wharf_session").await.unwrap();
    let session = session.value().to_string();
    assert_nothing_secret(&browser, &[&secret, &token], &session).await;

    eprintln!("step: A push appears");
    // A push appears without a reload: a marker set on this page survives.
    browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("body[data-live='1']"))
        .await
        .expect("the live feed never connected");
    browser
        .execute("window.wharfMarker = 'same page';", vec![])
        .await
        .unwrap();
    let pending = push(&wharf, "v1.0.0").await;
    wait_text(&browser, "#pending", "v1.0.0").await;
    let marker = browser
        .execute("return window.wharfMarker;", vec![])
        .await
        .unwrap();
    assert_eq!(marker, Value::from("same page"), "the page was reloaded");

    eprintln!("step: Approve runs it");
    // Approve runs it, and its log is visible.
    click_button(&browser, &format!("#dep-{pending}"), "Approve").await;
    wait_text(&browser, "#status", "succeeded").await;
    let log = wait_text(&browser, "#log", "done with v1.0.0").await;
    assert!(log.contains("deploying v1.0.0"), "{log}");
    assert_nothing_secret(&browser, &[&secret, &token], &session).await;

    eprintln!("step: Two staging versions");
    // Two staging versions, then Rollback from the overview.
    for tag in ["main-1", "main-2"] {
        let id = push(&wharf, tag).await;
        wharf.wait_for(&id, "succeeded", WAIT).await;
    }
    browser.goto(&format!("{base}/")).await.unwrap();
    wait_text(&browser, "#stage-web-staging", "main-2").await;
    click_button(&browser, "#stage-web-staging", "Rollback").await;
    wait_text(&browser, "main", "rollback").await;
    let (_, listed) = wharf
        .admin_get("/api/admin/deployments?project=web&stage=staging&limit=1")
        .await;
    let rollback = &listed["deployments"][0];
    assert_eq!(rollback["trigger"], "rollback", "{listed:#}");
    assert_eq!(rollback["tag"], "main-1", "{listed:#}");
    wharf
        .wait_for(rollback["id"].as_str().unwrap(), "succeeded", WAIT)
        .await;

    eprintln!("step: The deployments list");
    // The deployments list filters by status.
    browser
        .goto(&format!(
            "{base}/ui/deployments?status=succeeded&project=web"
        ))
        .await
        .unwrap();
    let list = wait_text(&browser, "main table", "main-2").await;
    assert!(list.contains("v1.0.0"), "{list}");
    let rows = browser
        .find_all(Locator::Css("main tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 4, "{list}");
    for row in rows {
        let text = row.text().await.unwrap();
        assert!(text.contains("succeeded"), "{text}");
    }
    assert_nothing_secret(&browser, &[&secret, &token], &session).await;

    if let Ok(dir) = std::env::var("DASHBOARD_SCREENSHOTS") {
        browser.goto(&format!("{base}/")).await.unwrap();
        wait_text(&browser, "#project-web", "staging").await;
        for (width, height) in [(1280, 1100), (375, 1500)] {
            browser.set_window_size(width, height).await.unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
            let png = browser.screenshot().await.unwrap();
            std::fs::write(Path::new(&dir).join(format!("dashboard-{width}.png")), png).unwrap();
        }
    }

    eprintln!("step: Sign-out ends");
    // Sign-out ends the session: the old cookie opens nothing any more.
    click_button(&browser, "header", "Sign out").await;
    browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#token"))
        .await
        .unwrap();
    let http = no_redirects();
    let cookie = format!("wharf_session={session}");
    let list = http
        .get(format!("{base}/ui/deployments"))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 303);
    assert_eq!(list.headers()["location"], "/");
    let events = http
        .get(format!("{base}/api/admin/events"))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 401);

    browser.close().await.unwrap();
    wharf.assert_no_secrets_logged(&[&secret, &token]);
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Sign in over HTTP; the session cookie header and the page's CSRF token.
async fn http_session(http: &reqwest::Client, wharf: &Wharf) -> (String, String) {
    let response = http
        .post(format!("{}/ui/login", wharf.base))
        .form(&[("token", wharf.token())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let set_cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_string();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    assert!(!set_cookie.contains("Secure"), "plain http: {set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    let page = http
        .get(format!("{}/", wharf.base))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    let headers = page.headers().clone();
    assert_eq!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .split(';')
            .take(2)
            .collect::<Vec<_>>(),
        ["default-src 'self'", " frame-ancestors 'none'"]
    );
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let html = page.text().await.unwrap();
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a CSRF field")
        .to_string();
    (cookie, csrf)
}

#[tokio::test]
async fn forged_and_replayed_requests_are_refused() {
    let wharf = started().await;
    let http = no_redirects();
    let base = wharf.base.clone();
    let (cookie, csrf) = http_session(&http, &wharf).await;
    let pending = push(&wharf, "v2.0.0").await;
    let approve = format!("{base}/ui/deployments/{pending}/approve");
    let post = |origin: Option<&str>, csrf: &str| {
        let mut request = http
            .post(&approve)
            .header("Cookie", &cookie)
            .form(&[("csrf", csrf)]);
        if let Some(origin) = origin {
            request = request.header("Origin", origin);
        }
        request.send()
    };

    eprintln!("step: Another site's form");
    // Another site's form carries the cookie (and even the right token).
    let forged = post(Some("http://evil.example"), &csrf).await.unwrap();
    assert_eq!(forged.status(), 403);
    // The dashboard's own origin without the session's CSRF token.
    let origin = base.clone();
    assert_eq!(post(Some(&origin), "guess").await.unwrap().status(), 403);
    wharf.wait_for(&pending, "awaiting_approval", WAIT).await;
    // Both right: approved.
    let approved = post(Some(&origin), &csrf).await.unwrap();
    assert_eq!(approved.status(), 303);
    wharf.wait_for(&pending, "succeeded", WAIT).await;

    eprintln!("step: Deploy and Rotate webhook URL");
    // Deploy a tag to a stage, from the dashboard's form.
    let deployed = http
        .post(format!("{base}/ui/deploy"))
        .header("Cookie", &cookie)
        .form(&[
            ("csrf", csrf.as_str()),
            ("project", "web"),
            ("stage", "staging"),
            ("tag", "main-manual"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(deployed.status(), 303);
    let id = deployed.headers()["location"]
        .to_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let manual = wharf.wait_for(&id, "succeeded", WAIT).await;
    assert_eq!(manual["trigger"], "manual");
    // Rotation: a confirmation page, then the new URL, shown once.
    let confirm = http
        .get(format!("{base}/ui/rotate"))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        confirm.contains(">Rotate webhook URL</button>"),
        "{confirm}"
    );
    let old_secret = wharf.secret();
    let rotated = http
        .post(format!("{base}/ui/rotate"))
        .header("Cookie", &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(rotated.status(), 200);
    assert_eq!(rotated.headers()["cache-control"], "no-store");
    let shown = rotated.text().await.unwrap();
    let new_secret = wharf.secret();
    assert_ne!(new_secret, old_secret);
    assert!(
        shown.contains(&format!("/api/webhook/{new_secret}")),
        "{shown}"
    );
    assert_eq!(
        wharf
            .status_with_secret(&old_secret, &push_body("main-x"))
            .await,
        404
    );
    let overview = http
        .get(format!("{base}/"))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!overview.contains(&new_secret) && !overview.contains(&wharf.token()));

    eprintln!("step: The bearer token opens");
    // The bearer token opens the event stream too; a wrong one does not.
    let mut events = http
        .get(format!("{base}/api/admin/events"))
        .bearer_auth(wharf.token())
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    let mut seen = String::new();
    let deadline = Instant::now() + WAIT;
    while !seen.contains("event:hello") {
        assert!(Instant::now() < deadline, "no hello event: {seen:?}");
        let chunk = tokio::time::timeout(WAIT, events.chunk())
            .await
            .expect("no hello event")
            .unwrap()
            .expect("the stream ended");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    drop(events);
    let wrong = http
        .get(format!("{base}/api/admin/events"))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);

    eprintln!("step: A new admin token");
    // A new admin token (settings.toml edited by hand) ends the session.
    let settings = wharf.dir.join("state/settings.toml");
    let text = std::fs::read_to_string(&settings).unwrap();
    let old_token = wharf.token();
    let new_token = "f".repeat(64);
    std::fs::write(&settings, text.replace(&old_token, &new_token)).unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let page = http
            .get(format!("{base}/ui/deployments"))
            .header("Cookie", &cookie)
            .send()
            .await
            .unwrap();
        if page.status() == 303 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the session outlived the admin token"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stale = post(Some(&origin), &csrf).await.unwrap();
    assert_eq!(stale.status(), 401);

    eprintln!("step: Failed sign-ins are");
    // Failed sign-ins are limited per address: after five, even the right
    // token waits.
    for _ in 0..5 {
        let wrong = http
            .post(format!("{base}/ui/login"))
            .form(&[("token", "wrong")])
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401);
    }
    let limited = http
        .post(format!("{base}/ui/login"))
        .form(&[("token", new_token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), 429);
    wharf.assert_no_secrets_logged(&[&old_token, &new_token, &old_secret, &wharf.secret()]);
}

#[tokio::test]
async fn behind_https_the_session_cookie_is_secure() {
    let wharf = Wharf::start("public_url = \"https://deploy.example.com\"").await;
    let http = no_redirects();
    let sign_in = |origin: &'static str| {
        http.post(format!("{}/ui/login", wharf.base))
            .header("Origin", origin)
            .form(&[("token", wharf.token())])
            .send()
    };
    let foreign = sign_in("https://evil.example").await.unwrap();
    assert_eq!(foreign.status(), 403);
    assert!(foreign.headers().get("set-cookie").is_none());
    let own = sign_in("https://deploy.example.com").await.unwrap();
    assert_eq!(own.status(), 303);
    let cookie = own.headers()["set-cookie"].to_str().unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Secure"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
}
