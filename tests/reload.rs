//! Hot reload with the real binary: project files and settings.toml are
//! followed live, a bad edit keeps the previous version, SIGHUP reloads all.

// A panic in a test is a failed test: the no-panic lints are for the daemon.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::string_slice
)]

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{script_project, Wharf};

/// The contract: a change is live within 2 s.
const LIVE: Duration = Duration::from_secs(2);

async fn stages_for(wharf: &Wharf, image: &str) -> Vec<String> {
    let (status, body) = wharf.push(&json!({ "image": image }).to_string()).await;
    assert!(status == 200 || status == 202, "{status}: {body}");
    body["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            format!(
                "{}/{}",
                d["project"].as_str().unwrap(),
                d["stage"].as_str().unwrap()
            )
        })
        .collect()
}

/// Poll pushes until `image` deploys to exactly `expected` (or fail after 2 s).
async fn until_matches(wharf: &Wharf, image: &str, expected: &[&str]) {
    let started = Instant::now();
    loop {
        let got = stages_for(wharf, image).await;
        if got == expected {
            return;
        }
        assert!(
            started.elapsed() < LIVE,
            "{image}: got {got:?}, expected {expected:?} within {LIVE:?}\n{}",
            wharf.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn project(tags: &str) -> String {
    script_project(
        "acme/web",
        "true",
        &format!("[stages.s]\ntags = [{tags}]\nauto_deploy = false\n"),
    )
}

async fn errors(wharf: &Wharf) -> Vec<Value> {
    let (_, body) = wharf.admin_get("/api/admin/projects").await;
    body["errors"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn project_files_follow_edits_live() {
    let wharf = Wharf::start("").await;
    // Added.
    wharf.write_project("web", &project("\"v*\""));
    until_matches(&wharf, "acme/web:v1", &["web/s"]).await;

    // Changed tags: the new match, the old do not.
    wharf.write_project("web", &project("\"rc-*\""));
    until_matches(&wharf, "acme/web:rc-1", &["web/s"]).await;
    assert!(stages_for(&wharf, "acme/web:v2").await.is_empty());

    // Invalid TOML: the previous version keeps matching, the error is shown.
    wharf.write_project("web", "image = \"acme/web\"\n[stages.s\n");
    let deadline = Instant::now() + LIVE;
    while errors(&wharf).await.is_empty() {
        assert!(Instant::now() < deadline, "no error shown");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let shown = errors(&wharf).await;
    assert_eq!(shown.len(), 1);
    assert!(
        shown[0]["file"]
            .as_str()
            .unwrap()
            .ends_with("projects/web.toml"),
        "{shown:?}"
    );
    assert_eq!(shown[0]["line"], 2);
    assert_eq!(
        stages_for(&wharf, "acme/web:rc-2").await,
        ["web/s"],
        "{}",
        wharf.output()
    );
    let status = wharf.cli(&["status"]);
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("web.toml:2:"),
        "{status:?}"
    );
    // Logged once, not on every request.
    let logged = wharf.output().matches("project file rejected").count();
    assert_eq!(logged, 1, "{}", wharf.output());

    // Fixed: the new content applies and the error is gone.
    wharf.write_project("web", &project("\"fixed-*\""));
    until_matches(&wharf, "acme/web:fixed-1", &["web/s"]).await;
    assert!(errors(&wharf).await.is_empty());

    // Saved the way editors do: a temporary file renamed over the original.
    let temp = wharf.dir.join("projects/.web.toml.swp");
    std::fs::write(&temp, project("\"renamed-*\"")).unwrap();
    std::fs::rename(&temp, wharf.project_path("web")).unwrap();
    until_matches(&wharf, "acme/web:renamed-1", &["web/s"]).await;

    // Moved in from elsewhere (`mv`), under another name.
    let outside = wharf.dir.join("api.toml");
    std::fs::write(
        &outside,
        script_project(
            "acme/api",
            "true",
            "[stages.s]\ntags = [\"*\"]\nauto_deploy = false\n",
        ),
    )
    .unwrap();
    std::fs::rename(&outside, wharf.project_path("api")).unwrap();
    until_matches(&wharf, "acme/api:1", &["api/s"]).await;

    // Deleted: unmatched.
    std::fs::remove_file(wharf.project_path("web")).unwrap();
    until_matches(&wharf, "acme/web:renamed-2", &[]).await;
    let (secret, token) = wharf.settings();
    wharf.assert_no_secrets_logged(&[&secret, &token]);
}

#[tokio::test(flavor = "multi_thread")]
async fn settings_edits_apply_and_a_bad_edit_keeps_the_old_secret() {
    let wharf = Wharf::start("").await;
    let (old, token) = wharf.settings();
    let body = r#"{"image": "nginx:1"}"#;
    let path = wharf.dir.join("state/settings.toml");

    // A broken edit: the old secret stays, the log says why.
    std::fs::write(&path, "webhook_secret = \"short\"\nadmin_token = \"x\"\n").unwrap();
    assert!(support::eventually(LIVE, || wharf.output().contains("settings.toml rejected")).await);
    assert_eq!(wharf.status_with_secret(&old, body).await, 200);

    // A good hand edit: the new secret works, the old is 404.
    let new = "6f1d2c3b-4a59-4e7f-8a9b-0c1d2e3f4a5b";
    std::fs::write(
        &path,
        format!("webhook_secret = \"{new}\"\nadmin_token = \"{token}\"\n"),
    )
    .unwrap();
    let deadline = Instant::now() + LIVE;
    while wharf.status_with_secret(new, body).await != 200 {
        assert!(Instant::now() < deadline, "hand-edited secret not applied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(wharf.status_with_secret(&old, body).await, 404);
    assert!(
        !wharf.output().contains("short"),
        "the rejected value was logged"
    );

    // Reading files is not editing them: no reload storm from reads, from
    // wharf's own reads, or from requests.
    wharf.write_project("web", &project("\"v*\""));
    until_matches(&wharf, "acme/web:v1", &["web/s"]).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let reloads =
        |output: &str| output.matches("reloaded").count() + output.matches("project added").count();
    let before = reloads(&wharf.output());
    for _ in 0..20 {
        let _ = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::read_to_string(wharf.project_path("web")).unwrap();
        assert_eq!(wharf.status_with_secret(new, body).await, 200);
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(reloads(&wharf.output()), before, "{}", wharf.output());
    wharf.assert_no_secrets_logged(&[&old, new, &token]);
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_everything_and_reports_restart_required_keys() {
    let wharf = Wharf::start("").await;
    wharf.write_project("web", &project("\"v*\""));
    until_matches(&wharf, "acme/web:v1", &["web/s"]).await;

    let config = wharf.dir.join("wharf.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("127.0.0.1:0", "127.0.0.1:1")).unwrap();
    support::signal(wharf.pid(), "HUP");
    assert!(
        support::eventually(LIVE, || wharf.output().contains("restart required")).await,
        "{}",
        wharf.output()
    );
    assert!(
        wharf.output().contains("wharf.toml changed (listen)"),
        "{}",
        wharf.output()
    );
    // Still serving on the old address.
    until_matches(&wharf, "acme/web:v2", &["web/s"]).await;
}
