//! Issue 14's findings, end to end against the real binary: input that once
//! crashed, leaked or ran twice, and now gets a clear error.

// A panic in a test is a failed test: the no-panic lints are for the daemon.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::string_slice
)]

mod support;

use std::time::Duration;

use support::{script_project, Wharf};

/// A project file whose tag glob is not ASCII once panicked at start, in
/// `wharf check` and in the reload task. Now it is a `file:line` error and
/// the other projects keep working.
#[tokio::test(flavor = "multi_thread")]
async fn a_non_ascii_tag_glob_is_a_load_error_not_a_crash() {
    let bad = "image = \"acme/bad\"\ndeployer = \"script\"\n[script]\ncommand = [\"true\"]\n[stages.a]\ntags = [\"é*\"]\n";
    let mut wharf = Wharf::start("").await;
    wharf.write_project(
        "good",
        &script_project("acme/good", "true", "[stages.a]\ntags = [\"*\"]"),
    );
    wharf.wait_loaded("good").await;
    // A live edit: the reload task must survive it.
    wharf.write_project("bad", bad);
    let error = wharf.load_error("bad.toml").await;
    assert!(error.contains("\"line\":6"), "{error}");
    assert!(error.contains("can never match"), "{error}");
    let (status, _) = wharf.admin_get("/api/admin/projects").await;
    assert_eq!(status, 200);

    // `wharf check` reports it instead of panicking.
    let check = wharf.cli(&["check"]);
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert_eq!(
        check.status.code(),
        Some(1),
        "{stdout}\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(stdout.contains("bad.toml:6:"), "{stdout}");

    // And a start with the file present serves the good project.
    wharf.terminate().await;
    wharf.launch().await;
    wharf.wait_loaded("good").await;
    assert!(wharf
        .load_error("bad.toml")
        .await
        .contains("can never match"));
    let _ = Duration::ZERO;
}

/// Send one raw HTTP/1.1 request, so the path reaches wharf exactly as
/// written (no client normalizes it); the status code.
fn raw_request(base: &str, method: &str, path: &str, headers: &str, body: &str) -> u16 {
    use std::io::{Read, Write};
    let address = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Type: application/json\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// The redaction once tested the raw path's prefix, so spellings of the
/// webhook path that Rocket still routes (or that 404) logged the secret at
/// info level. Now a request line carries the matched route's template, and
/// an unmatched one no segment after the first.
#[tokio::test(flavor = "multi_thread")]
async fn no_spelling_of_the_webhook_path_logs_the_secret() {
    let wharf = Wharf::start("").await;
    wharf.write_project(
        "web",
        &script_project("acme/web", "true", "[stages.a]\ntags = [\"*\"]"),
    );
    wharf.wait_loaded("web").await;
    let secret = wharf.secret();
    let body = r#"{"image": "acme/web:v1"}"#;
    for path in [
        format!("/api/webhook/{secret}"),
        format!("//api/webhook/{secret}"),
        format!("/api//webhook/{secret}"),
        format!("/%61pi/webhook/{secret}"),
        format!("/api/webhooks/{secret}"),
        format!("/API/webhook/{secret}"),
        format!("/api/webhook/{secret}/x?a=1"),
        format!("/{secret}"),
    ] {
        let status = raw_request(&wharf.base, "POST", &path, "", body);
        assert!(status >= 200, "{path}: no answer");
    }
    // The request lines are written after the answer: wait for the last.
    assert!(
        support::eventually(Duration::from_secs(5), || wharf
            .output()
            .matches("request")
            .count()
            >= 8)
        .await
    );
    let output = wharf.output();
    assert!(
        output.contains("path=\"/api/webhook/<secret>\""),
        "a routed push logs its route's template:\n{output}"
    );
    wharf.assert_no_secrets_logged(&[&secret, &wharf.token()]);
}

/// A second `wharf serve` on the same state dir once re-queued the live
/// daemon's running deployment and deployed beside it. Now it exits at
/// once, naming the dir and the holder's pid, and touches nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_daemon_on_the_same_state_dir_exits_and_touches_nothing() {
    let wharf = Wharf::start("").await;
    let marker = wharf.dir.join("runs.log");
    wharf.write_project(
        "web",
        &script_project(
            "acme/web",
            &format!("echo run >> {}; sleep 3", marker.display()),
            "[stages.a]\ntags = [\"*\"]",
        ),
    );
    wharf.wait_loaded("web").await;
    let id = wharf.push_one(r#"{"image": "acme/web:v1"}"#).await;
    wharf
        .wait_for(&id, "running", Duration::from_secs(10))
        .await;

    let started = std::time::Instant::now();
    let mut second = std::process::Command::new(support::BIN)
        .arg("--config")
        .arg(wharf.dir.join("wharf.toml"))
        .arg("serve")
        .env_remove("WHARF_CONFIG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let exited = support::eventually(Duration::from_secs(5), || {
        second.try_wait().unwrap().is_some()
    })
    .await;
    if !exited {
        let _ = second.kill();
    }
    let second = second.wait_with_output().unwrap();
    assert!(exited, "the second daemon kept running beside the first");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(5), "{stderr}");
    let state = std::fs::canonicalize(wharf.dir.join("state")).unwrap();
    assert!(stderr.contains(&state.display().to_string()), "{stderr}");
    assert!(stderr.contains(&format!("pid {}", wharf.pid())), "{stderr}");

    // The first daemon's deployment ran once and ended well.
    let done = wharf
        .wait_for(&id, "succeeded", Duration::from_secs(20))
        .await;
    support::assert_status(&done, "succeeded");
    assert_eq!(support::read(&marker), "run\n");
    // The commands that only read or rewrite files still work beside it.
    for command in [&["check"][..], &["url"], &["rotate"]] {
        let output = wharf.cli(command);
        assert!(
            output.status.success(),
            "{command:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let (status, _) = wharf.admin_get("/api/admin/projects").await;
    assert_eq!(status, 200);
}

/// Run the binary with these arguments against `dir`'s config; it must exit
/// within `limit` (else it is killed and `None` is returned).
async fn run_to_exit(
    dir: &std::path::Path,
    args: &[&str],
    limit: Duration,
) -> Option<std::process::Output> {
    let mut child = std::process::Command::new(support::BIN)
        .arg("--config")
        .arg(dir.join("wharf.toml"))
        .args(args)
        .env_remove("WHARF_CONFIG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let exited = support::eventually(limit, || child.try_wait().unwrap().is_some()).await;
    if !exited {
        let _ = child.kill();
    }
    let output = child.wait_with_output().unwrap();
    exited.then_some(output)
}

/// A failed outcome write left a row `running` while newer deployments of
/// its stage went ahead; the next start re-ran it over the newer version.
/// The state such a failure leaves is made here with wharf's own store.
#[tokio::test(flavor = "multi_thread")]
async fn a_stale_running_row_is_interrupted_not_rerun_over_a_newer_version() {
    use wharf::deploy::store::{NewDeployment, Status, Store};
    let mut wharf = Wharf::start("").await;
    // The docker deployer is one whose interrupted deployments are re-run
    // (its swap is safe to repeat), which is what made the stale row run
    // over the newer version. Nothing answers on port 1: a re-run would
    // show in the log as a pull, and fail.
    wharf.write_project(
        "web",
        "image = \"127.0.0.1:1/acme/web\"\ndeployer = \"docker\"\n[stages.a]\ntags = [\"*\"]\n",
    );
    wharf.wait_loaded("web").await;
    wharf.terminate().await;
    let new = |tag: &str| NewDeployment {
        project: "web".into(),
        stage: "a".into(),
        repository: "127.0.0.1:1/acme/web".into(),
        tag: tag.into(),
        digest: None,
        deployer: "docker".into(),
        status: Status::Queued,
        trigger: "webhook",
    };
    let (stale, newer) = {
        let store = Store::open(&wharf.dir.join("state"), true).unwrap();
        let recorded = |tag: &str| {
            store
                .insert(&[new(tag)], &[])
                .unwrap()
                .unwrap()
                .deployments
                .remove(0)
        };
        let stale = recorded("v1");
        store.claim_next("web", "a").unwrap().unwrap();
        let newer = recorded("v2");
        let claimed = store.claim_next("web", "a").unwrap().unwrap().deployment;
        assert_eq!(claimed.id, newer.id);
        store
            .finish(claimed.seq, Status::Succeeded, "deployed")
            .unwrap();
        (stale.id, newer.id)
    };
    wharf.launch().await;
    let ended = wharf
        .wait_for(&stale, "interrupted", Duration::from_secs(10))
        .await;
    let reason = ended["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains(&newer),
        "the reason names the newer deployment: {reason}"
    );
    let log = support::log_text(&ended);
    assert!(
        !log.contains("deploying"),
        "the stale deployment ran again:\n{log}"
    );
    assert_eq!(wharf.deployment(&newer).await["status"], "succeeded");
}

/// `events = ["superseded"]` was accepted but never sent: superseding
/// happened in SQL, past the hook that notifies.
#[tokio::test(flavor = "multi_thread")]
async fn superseded_deployments_are_notified() {
    let (url, received) = support::receiver("ok").await;
    let extra =
        format!("[[notify]]\nurl = \"{url}\"\nformat = \"json\"\nevents = [\"superseded\"]\n");
    let wharf = Wharf::start(&extra).await;
    wharf.write_project(
        "web",
        &script_project(
            "acme/web",
            "sleep 2",
            "[stages.a]\ntags = [\"*\"]\n[stages.p]\ntags = [\"*\"]\nauto_deploy = false",
        ),
    );
    wharf.wait_loaded("web").await;
    let push = |tag: &str| format!(r#"{{"image": "acme/web:{tag}"}}"#);
    let first = wharf.push_until_accepted(&push("v1")).await;
    let running = first["deployments"][0]["id"].as_str().unwrap().to_string();
    let pending = first["deployments"][1]["id"].as_str().unwrap().to_string();
    wharf
        .wait_for(&running, "running", Duration::from_secs(10))
        .await;
    // v2 waits behind v1 and is superseded by v3 when v1 ends; v1's pending
    // approval in stage p is superseded by v2's at once.
    let second = wharf.push_until_accepted(&push("v2")).await;
    let waiting = second["deployments"][0]["id"].as_str().unwrap().to_string();
    wharf.push_until_accepted(&push("v3")).await;
    wharf
        .wait_for(&waiting, "superseded", Duration::from_secs(20))
        .await;
    let notified = |id: &str| {
        let id = id.to_string();
        let received = received.clone();
        move || {
            received.lock().unwrap().iter().any(|m| {
                m["deployment"]["id"] == id.as_str() && m["deployment"]["status"] == "superseded"
            })
        }
    };
    assert!(
        support::eventually(Duration::from_secs(10), notified(&waiting)).await,
        "{:?}",
        received.lock().unwrap()
    );
    assert!(
        support::eventually(Duration::from_secs(10), notified(&pending)).await,
        "{:?}",
        received.lock().unwrap()
    );
    assert!(received
        .lock()
        .unwrap()
        .iter()
        .all(|m| m["deployment"]["status"] == "superseded"));
}

/// Auto-create wrote `[stages.<stage>]` unquoted, so a stage name with a
/// dot (`default_stage = "v1.0"`) made a file that did not load.
#[tokio::test(flavor = "multi_thread")]
async fn an_auto_created_project_with_a_dotted_stage_loads() {
    let wharf = Wharf::start("[auto_create]\nenabled = true\nallow = [\"127.0.0.1:1/acme/*\"]\ndefault_stage = \"v1.0\"\n").await;
    // Nothing listens on port 1: inspection fails fast and the file says so.
    let (status, body) = wharf
        .push(r#"{"image": "127.0.0.1:1/acme/dotted:v1"}"#)
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["created_project"], "dotted", "{body}");
    assert_eq!(body["deployments"][0]["stage"], "v1.0", "{body}");
    wharf.wait_loaded("dotted").await;
    let check = wharf.cli(&["check"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
}

/// A store that cannot be written only warned at start: the daemon said it
/// was ready and then answered 500 to every push.
#[tokio::test(flavor = "multi_thread")]
async fn an_unwritable_store_stops_startup_with_a_clear_reason() {
    let mut wharf = Wharf::start("").await;
    wharf.terminate().await;
    let db = wharf.dir.join("state/wharf.db");
    let chattr = |flag: &str| {
        let status = std::process::Command::new("chattr")
            .arg(flag)
            .arg(&db)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "chattr {flag} failed: this test needs an ext4-like filesystem and root"
        );
    };
    chattr("+i");
    let output = run_to_exit(&wharf.dir, &["serve"], Duration::from_secs(10)).await;
    chattr("-i");
    let output = output.expect("wharf kept running on a store it cannot write");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("wharf.db"), "{stderr}");
    assert!(
        stderr.contains("read-only") || stderr.contains("cannot write"),
        "{stderr}"
    );
}

/// `/metrics` needed the full admin token; now a read-only `metrics_token`
/// opens it and nothing else. The `Bearer` scheme is case-insensitive, and a
/// notification URL's `user:password@` never reaches the log.
#[tokio::test(flavor = "multi_thread")]
async fn a_metrics_token_opens_metrics_only_and_credentials_stay_out_of_logs() {
    let closed = common_free_port();
    let extra =
        format!("[[notify]]\nurl = \"http://hookuser:n0tify-pa55@127.0.0.1:{closed}/hook\"\n");
    let wharf = Wharf::start(&extra).await;
    let settings: toml::Table = support::read(&wharf.dir.join("state/settings.toml"))
        .parse()
        .unwrap();
    let metrics_token = settings["metrics_token"]
        .as_str()
        .expect("metrics_token is generated")
        .to_string();
    assert!(metrics_token.len() >= 32);
    assert_ne!(metrics_token, wharf.token());
    let http = reqwest::Client::new();
    let get = |path: &str, authorization: String| {
        http.get(format!("{}{path}", wharf.base))
            .header("Authorization", authorization)
            .send()
    };
    assert_eq!(
        get("/metrics", format!("Bearer {metrics_token}"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        get("/api/admin/projects", format!("Bearer {metrics_token}"))
            .await
            .unwrap()
            .status(),
        401
    );
    let rotate = http
        .post(format!("{}/api/admin/rotate", wharf.base))
        .bearer_auth(&metrics_token)
        .send()
        .await
        .unwrap();
    assert_eq!(rotate.status(), 401);
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let token = wharf.token();
        assert_eq!(
            get("/api/admin/projects", format!("{scheme} {token}"))
                .await
                .unwrap()
                .status(),
            200,
            "{scheme}"
        );
        assert_eq!(
            get("/metrics", format!("{scheme}  {token}"))
                .await
                .unwrap()
                .status(),
            200,
            "{scheme}"
        );
    }
    assert_eq!(
        get("/metrics", "Basic abc".into()).await.unwrap().status(),
        401
    );

    // A deployment ends, the receiver is down: the failure is logged by host.
    wharf.write_project(
        "web",
        &script_project("acme/web", "true", "[stages.a]\ntags = [\"*\"]"),
    );
    wharf.wait_loaded("web").await;
    let id = wharf.push_one(r#"{"image": "acme/web:v1"}"#).await;
    wharf
        .wait_for(&id, "succeeded", Duration::from_secs(10))
        .await;
    assert!(
        support::eventually(Duration::from_secs(10), || wharf
            .output()
            .contains("notification failed"))
        .await,
        "{}",
        wharf.output()
    );
    let output = wharf.output();
    assert!(output.contains(&format!("127.0.0.1:{closed}")), "{output}");
    wharf.assert_no_secrets_logged(&[
        &wharf.secret(),
        &wharf.token(),
        &metrics_token,
        "n0tify-pa55",
        "hookuser",
    ]);
}

/// A loopback port nothing listens on.
fn common_free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The daemon's peak resident memory, from the kernel's own accounting.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = support::read(std::path::Path::new(&format!("/proc/{pid}/status")));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A script that wrote gigabytes without a newline was buffered whole by
/// the line reader. Now a line is cut at 8 KiB as it arrives.
#[tokio::test(flavor = "multi_thread")]
async fn a_script_writing_without_newlines_costs_no_memory() {
    let wharf = Wharf::start("").await;
    // 512 MiB of 'x' on stdout and on stderr, no newline, then a last line.
    let snippet = "head -c 536870912 /dev/zero | tr '\\0' x; head -c 536870912 /dev/zero | tr '\\0' y >&2; echo; echo done";
    wharf.write_project(
        "flood",
        &script_project("acme/flood", snippet, "[stages.a]\ntags = [\"*\"]"),
    );
    wharf.wait_loaded("flood").await;
    let before = peak_rss_kib(wharf.pid());
    let id = wharf.push_one(r#"{"image": "acme/flood:v1"}"#).await;
    let done = wharf
        .wait_for(&id, "succeeded", Duration::from_secs(60))
        .await;
    let log = support::log_text(&done);
    assert!(
        log.contains("[stdout] done"),
        "{}",
        &log[log.len().saturating_sub(500)..]
    );
    let peak = peak_rss_kib(wharf.pid());
    // 1 GiB went through; a few MiB of growth is the log's own lines.
    assert!(
        peak < before + 64 * 1024,
        "peak RSS grew from {before} KiB to {peak} KiB"
    );
}

/// A path in the config that names a device read it until memory ran out
/// (`tls_ca = "/dev/zero"`, a project file linked to `/dev/zero`): files an
/// operator names are read only when regular, and only up to 4 MiB. The
/// check runs under a 2 GiB address-space limit so the old behaviour fails
/// the test instead of the machine.
#[tokio::test(flavor = "multi_thread")]
async fn a_config_path_naming_a_device_is_an_error_not_an_exhaustion() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    std::fs::create_dir_all(dir.join("projects")).unwrap();
    std::fs::write(
        dir.join("wharf.toml"),
        "listen = \"127.0.0.1:0\"\n[hosts.far]\ndocker_host = \"tcp://127.0.0.1:2376\"\ntls_ca = \"/dev/zero\"\ntls_cert = \"/dev/zero\"\ntls_key = \"/dev/zero\"\n",
    )
    .unwrap();
    std::os::unix::fs::symlink("/dev/zero", dir.join("projects/zero.toml")).unwrap();
    std::fs::write(
        dir.join("projects/good.toml"),
        script_project("acme/good", "true", "[stages.a]\ntags = [\"*\"]"),
    )
    .unwrap();
    let output = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -v 2097152; exec \"$0\" check --config \"$1\"")
        .arg(support::BIN)
        .arg(dir.join("wharf.toml"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!output.status.success(), "{text}");
    assert!(
        text.contains("tls_ca /dev/zero: not a regular file"),
        "{text}"
    );
    // Without the bad host, the project folder is checked: the device is
    // one file's error, the good project still loads.
    std::fs::write(dir.join("wharf.toml"), "listen = \"127.0.0.1:0\"\n").unwrap();
    let output = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -v 2097152; exec \"$0\" check --config \"$1\"")
        .arg(support::BIN)
        .arg(dir.join("wharf.toml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("zero.toml:1: "), "{stdout}");
    assert!(stdout.contains("not a regular file"), "{stdout}");
    assert!(
        stdout.contains("1 project(s) loaded, 1 with errors"),
        "{stdout}"
    );
}
