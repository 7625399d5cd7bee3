//! Issue 14's findings, end to end against the real binary: input that once
//! crashed, leaked or ran twice, and now gets a clear error.

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
    let accepted = wharf
        .push_until_accepted(r#"{"image": "acme/web:v1"}"#)
        .await;
    let id = accepted["deployments"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
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
