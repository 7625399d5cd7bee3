//! Registry polling end to end: the real binary polls a real
//! `docker-registry` on loopback (with and without htpasswd), images pushed
//! as plain distribution API calls (a blob and a manifest per image, so no
//! engine is needed), deployed by the `script` deployer.
//!
//! Without `/usr/bin/docker-registry` the tests print why and pass, unless
//! `WHARF_REQUIRE_DOCKER=1` (CI), where they fail.

// A panic in a test is a failed test: the no-panic lints are for the daemon.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::string_slice
)]

mod common;
mod support;

use std::time::{Duration, Instant};

use common::registry::{Pusher, OCI_MANIFEST};
use common::registry_or_skip;
use serde_json::{json, Value};
use support::{script_project, Wharf};

const WAIT: Duration = Duration::from_secs(30);
/// Long enough for several 1 s polls (each ±10 %).
const SOME_POLLS: Duration = Duration::from_millis(3500);

/// The test's registry ([`common::Registry`]: a real `docker-registry`
/// that can be stopped and started again) and the login that pushes to it.
struct Registry {
    server: common::Registry,
    pusher: Pusher,
}

impl Registry {
    fn start(login: Option<(&str, &str)>) -> Registry {
        let server = match login {
            Some((user, password)) => common::Registry::start_private(user, password),
            None => common::Registry::start(None),
        };
        let pusher = Pusher::new(&server, login);
        Registry { server, pusher }
    }

    fn resume(&mut self) {
        self.server.resume();
    }

    fn stop(&mut self) {
        self.server.stop();
    }

    fn host(&self) -> String {
        self.server.host()
    }

    /// Push an image whose content is `marker` under `tag`; its digest.
    async fn push(&self, repository: &str, tag: &str, marker: &str) -> String {
        let (digest, _, _) = self
            .pusher
            .image(repository, tag, marker, OCI_MANIFEST)
            .await;
        digest
    }
}

/// A project `web` on `registry`'s `acme/web`, deployed by a script that
/// succeeds at once, with `stages`.
fn write_web(wharf: &Wharf, registry: &Registry, stages: &str) {
    wharf.write_project(
        "web",
        &script_project(
            &format!("{}/acme/web", registry.host()),
            "echo deployed $WHARF_TAG $WHARF_DIGEST",
            stages,
        ),
    );
}

/// The deployments of a stage, oldest first.
async fn deployments(wharf: &Wharf, stage: &str) -> Vec<Value> {
    let (status, body) = wharf
        .admin_get(&format!(
            "/api/admin/deployments?project=web&stage={stage}&limit=100"
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    let mut list = body["deployments"].as_array().cloned().unwrap_or_default();
    list.reverse();
    list
}

/// (tag, digest, trigger) of each deployment of a stage, oldest first.
async fn deployed(wharf: &Wharf, stage: &str) -> Vec<(String, String, String)> {
    deployments(wharf, stage)
        .await
        .iter()
        .map(|d| {
            (
                d["tag"].as_str().unwrap_or("").to_string(),
                d["digest"].as_str().unwrap_or("").to_string(),
                d["trigger"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Wait until the stage has `count` deployments, all final or awaiting
/// approval; they are returned.
async fn wait_count(wharf: &Wharf, stage: &str, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let list = deployments(wharf, stage).await;
        let settled = list.iter().all(|d| {
            matches!(
                d["status"].as_str(),
                Some("succeeded" | "failed" | "awaiting_approval" | "superseded")
            )
        });
        if list.len() >= count && settled {
            assert_eq!(list.len(), count, "{list:#?}");
            return list;
        }
        assert!(
            Instant::now() < deadline,
            "stage {stage}: {} deployments after {WAIT:?}, expected {count}: {list:#?}\n{}",
            list.len(),
            wharf.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `stages` entry of the projects listing for `stage` of `web`.
async fn stage_view(wharf: &Wharf, stage: &str) -> Value {
    let (_, body) = wharf.admin_get("/api/admin/projects").await;
    body["projects"]
        .as_array()
        .and_then(|projects| projects.iter().find(|p| p["name"] == "web"))
        .and_then(|p| p["stages"].as_array())
        .and_then(|stages| stages.iter().find(|s| s["name"] == stage))
        .cloned()
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn the_highest_semver_never_a_prerelease_nor_a_downgrade_nor_a_repeat() {
    if !registry_or_skip("semver") {
        return;
    }
    let registry = Registry::start(None);
    for tag in ["v1.9.0", "v1.10.0", "v2.0.0-rc.1", "latest-not-matched"] {
        registry.push("acme/web", tag, tag).await;
    }
    let wharf = Wharf::start("").await;
    write_web(
        &wharf,
        &registry,
        "[stages.prod]\ntags = [\"v*\"]\npoll = \"1s\"\n[stages.next]\ntags = [\"v*\"]\npoll = \"1s\"\nprerelease = true\n",
    );
    let prod = wait_count(&wharf, "prod", 1).await;
    assert_eq!(prod[0]["tag"], "v1.10.0", "{prod:#?}");
    assert_eq!(prod[0]["trigger"], "poll");
    assert_eq!(prod[0]["status"], "succeeded");
    assert!(
        prod[0]["digest"].as_str().unwrap().starts_with("sha256:"),
        "pinned to its digest: {prod:#?}"
    );
    let next = wait_count(&wharf, "next", 1).await;
    assert_eq!(next[0]["tag"], "v2.0.0-rc.1", "{next:#?}");

    // A lower version pushed later is no reason to move back, and the same
    // tags polled again deploy nothing.
    registry.push("acme/web", "v1.9.9", "v1.9.9").await;
    tokio::time::sleep(SOME_POLLS).await;
    assert_eq!(deployed(&wharf, "prod").await.len(), 1);
    assert_eq!(deployed(&wharf, "next").await.len(), 1);

    // A higher release: both stages move to it, once.
    let digest = registry.push("acme/web", "v2.0.0", "v2.0.0").await;
    let prod = wait_count(&wharf, "prod", 2).await;
    assert_eq!(prod[1]["tag"], "v2.0.0");
    assert_eq!(prod[1]["digest"], digest.as_str());
    assert_eq!(wait_count(&wharf, "next", 2).await[1]["tag"], "v2.0.0");
    tokio::time::sleep(SOME_POLLS).await;
    assert_eq!(deployed(&wharf, "prod").await.len(), 2);

    let status = wharf.cli(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("last: v2.0.0 succeeded (poll)"), "{text}");
    assert!(text.contains("poll every 1s"), "{text}");
    let (_, metrics) = wharf.admin_get("/metrics").await;
    let metrics = metrics.as_str().unwrap_or_default().to_string();
    assert!(
        metrics.contains("wharf_polls_total{result=\"deployed\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("wharf_registry_request_duration_seconds_count{call=\"tags\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_moving_tag_is_deployed_once_per_new_digest() {
    if !registry_or_skip("moving") {
        return;
    }
    let registry = Registry::start(None);
    let first = registry.push("acme/web", "main", "one").await;
    let wharf = Wharf::start("").await;
    write_web(
        &wharf,
        &registry,
        "[stages.edge]\ntags = [\"main\"]\npoll = \"1s\"\n",
    );
    wait_count(&wharf, "edge", 1).await;
    tokio::time::sleep(SOME_POLLS).await;
    let second = registry.push("acme/web", "main", "two").await;
    wait_count(&wharf, "edge", 2).await;
    tokio::time::sleep(SOME_POLLS).await;
    // Back to a digest it already had: not deployed again.
    registry.push("acme/web", "main", "one").await;
    tokio::time::sleep(SOME_POLLS).await;
    let pairs = deployed(&wharf, "edge").await;
    assert_eq!(
        pairs,
        vec![
            ("main".to_string(), first, "poll".to_string()),
            ("main".to_string(), second, "poll".to_string()),
        ]
    );
}

#[tokio::test]
async fn approvals_are_respected_and_not_asked_twice() {
    if !registry_or_skip("approvals") {
        return;
    }
    let registry = Registry::start(None);
    registry.push("acme/web", "v1.0.0", "a").await;
    let wharf = Wharf::start("").await;
    write_web(
        &wharf,
        &registry,
        "[stages.prod]\ntags = [\"v*\"]\nauto_deploy = false\npoll = \"1s\"\n",
    );
    let waiting = wait_count(&wharf, "prod", 1).await;
    assert_eq!(waiting[0]["status"], "awaiting_approval");
    assert_eq!(waiting[0]["trigger"], "poll");
    tokio::time::sleep(SOME_POLLS).await;
    assert_eq!(deployed(&wharf, "prod").await.len(), 1, "asked once");
    let id = waiting[0]["id"].as_str().unwrap();
    let (status, body) = wharf
        .admin_post(&format!("/api/admin/deployments/{id}/approve"), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let done = wharf.wait_for(id, "succeeded", WAIT).await;
    assert_eq!(
        done["trigger"], "poll",
        "an approved deployment keeps its trigger"
    );
    tokio::time::sleep(SOME_POLLS).await;
    assert_eq!(deployed(&wharf, "prod").await.len(), 1);
}

#[tokio::test]
async fn a_private_registry_that_goes_down_shows_an_error_and_recovers() {
    if !registry_or_skip("down") {
        return;
    }
    let mut registry = Registry::start(Some(("ci", "s3cret")));
    registry.push("acme/web", "v1.0.0", "a").await;
    let docker_config = tempfile::tempdir().unwrap();
    std::fs::write(
        docker_config.path().join("config.json"),
        json!({"auths": {registry.host(): {"username": "ci", "password": "s3cret"}}}).to_string(),
    )
    .unwrap();
    let wharf = Wharf::start_with_env(
        "",
        &[("DOCKER_CONFIG", docker_config.path().to_str().unwrap())],
    )
    .await;
    write_web(
        &wharf,
        &registry,
        "[stages.prod]\ntags = [\"v*\"]\npoll = \"1s\"\n",
    );
    let first = wait_count(&wharf, "prod", 1).await;
    assert_eq!(first[0]["tag"], "v1.0.0");
    assert!(stage_view(&wharf, "prod").await["poll_error"].is_null());

    registry.stop();
    let deadline = Instant::now() + WAIT;
    let error = loop {
        let view = stage_view(&wharf, "prod").await;
        if let Some(error) = view["poll_error"].as_str() {
            break error.to_string();
        }
        assert!(Instant::now() < deadline, "no poll_error: {view:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(error.contains("unreachable"), "{error}");
    let status = wharf.cli(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("poll error: registry"), "{text}");

    registry.resume();
    registry.push("acme/web", "v1.1.0", "b").await;
    let both = wait_count(&wharf, "prod", 2).await;
    assert_eq!(both[1]["tag"], "v1.1.0");
    let deadline = Instant::now() + WAIT;
    while !stage_view(&wharf, "prod").await["poll_error"].is_null() {
        assert!(Instant::now() < deadline, "poll_error stays");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wharf.assert_no_secrets_logged(&["s3cret"]);
}

#[tokio::test]
async fn what_a_webhook_deployed_is_not_deployed_again_by_polling() {
    if !registry_or_skip("webhook") {
        return;
    }
    let registry = Registry::start(None);
    let release = registry.push("acme/web", "v1.0.0", "a").await;
    let main = registry.push("acme/web", "main", "b").await;
    let wharf = Wharf::start("").await;
    let stages = "[stages.prod]\ntags = [\"v*\"]\n[stages.edge]\ntags = [\"main\"]\n";
    write_web(&wharf, &registry, stages);
    wharf.wait_loaded("web").await;
    for (tag, digest) in [("v1.0.0", &release), ("main", &main)] {
        let image = format!("{}/acme/web:{tag}", registry.host());
        let id = wharf
            .push_one(&json!({"image": image, "digest": digest}).to_string())
            .await;
        wharf.wait_for(&id, "succeeded", WAIT).await;
    }
    // Now the stages poll too (a live reload): nothing new to find.
    write_web(
        &wharf,
        &registry,
        "[stages.prod]\ntags = [\"v*\"]\npoll = \"1s\"\n[stages.edge]\ntags = [\"main\"]\npoll = \"1s\"\n",
    );
    let deadline = Instant::now() + WAIT;
    while stage_view(&wharf, "edge").await["poll"] != "1s" {
        assert!(Instant::now() < deadline, "the reload did not apply");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(SOME_POLLS).await;
    for stage in ["prod", "edge"] {
        let list = deployed(&wharf, stage).await;
        assert_eq!(list.len(), 1, "{stage}: {list:?}");
        assert_eq!(list[0].2, "webhook");
    }
    // The next release is polling's.
    registry.push("acme/web", "v1.0.1", "c").await;
    let prod = wait_count(&wharf, "prod", 2).await;
    assert_eq!(prod[1]["tag"], "v1.0.1");
    assert_eq!(prod[1]["trigger"], "poll");
}
