//! Zero-downtime routes, end to end: the real wharf binary, the real route
//! proxy process it starts, the real Docker engine and a real
//! `docker-registry` whose push notifications trigger the deployments. An
//! application that boots in 2 s sits behind `[docker.route]` while about
//! 50 requests a second (fresh connections and one kept-alive connection)
//! go through the route.
//!
//! Skips (with a message) without Docker, unless `WHARF_REQUIRE_DOCKER=1`.

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

use common::load::{assert_no_failures, gone, Load, ProxyGuard, Sample};
use common::{build_and_push, docker_or_skip, free_port, Behaviour, DockerStack};
use serde_json::Value;
use support::{assert_status, log_text};

/// A deployment here takes a few seconds (2 of them the app's boot).
const DEPLOY_LIMIT: Duration = Duration::from_secs(90);

/// Fields drop in order: the proxy is stopped while its pid file still
/// exists (the wharf's temp folder goes with the docker stack).
struct Stack {
    proxy: ProxyGuard,
    docker: DockerStack,
}

impl std::ops::Deref for Stack {
    type Target = DockerStack;

    fn deref(&self) -> &DockerStack {
        &self.docker
    }
}

impl std::ops::DerefMut for Stack {
    fn deref_mut(&mut self) -> &mut DockerStack {
        &mut self.docker
    }
}

impl Stack {
    async fn start(test: &str) -> Stack {
        let docker = DockerStack::start(test, "", true).await;
        Stack {
            proxy: ProxyGuard {
                pid_file: docker.wharf.dir.join("state/proxy.pid"),
            },
            docker,
        }
    }

    /// The finished deployment of `tag`, with its log.
    async fn outcome(&self, tag: &str) -> Value {
        self.docker.outcome_within(tag, DEPLOY_LIMIT).await
    }

    async fn push_and_wait(&self, tag: &str, behaviour: Behaviour) -> Value {
        build_and_push(&self.image(tag), &behaviour);
        self.outcome(tag).await
    }

    /// The running deployment of `tag` once its log contains `needle`.
    async fn wait_log(&self, tag: &str, needle: &str) -> Value {
        let deadline = Instant::now() + DEPLOY_LIMIT;
        loop {
            let (_, body) = self
                .wharf
                .admin_get(&format!("/api/admin/deployments?project={}", self.name))
                .await;
            let id = body["deployments"]
                .as_array()
                .and_then(|l| l.iter().find(|d| d["tag"] == tag))
                .and_then(|d| d["id"].as_str().map(str::to_string));
            if let Some(id) = id {
                let deployment = self.wharf.deployment(&id).await;
                if log_text(&deployment).contains(needle) {
                    return deployment;
                }
            }
            assert!(Instant::now() < deadline, "{tag} never logged {needle:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn app(version: &str) -> Behaviour {
    Behaviour::BootsSlowly {
        version: version.into(),
        port: 80,
    }
}

/// GET through the route on a fresh connection.
async fn get(port: u16, path: &str) -> Result<(u16, String), String> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let response = client
        .get(format!("http://127.0.0.1:{port}{path}"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response.text().await.map_err(|e| e.to_string())?;
    Ok((status, body.trim().to_string()))
}

/// Three good deployments, a crashing image and one that never turns
/// healthy, under continuous load; then SIGTERM and kill -9 of the daemon
/// under load and another deployment; then a restart of the proxy itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deployments_and_daemon_restarts_under_load_drop_no_request() {
    if !docker_or_skip("deployments_and_daemon_restarts_under_load_drop_no_request") {
        return;
    }
    let mut stack = Stack::start("routes-load").await;
    let listen = free_port();
    stack
        .project(&format!(
            "health = {{ http = {{ path = \"/\", port = 80 }}, timeout = \"20s\" }}\nkeep_images = 0\n# httpd as PID 1 ignores SIGTERM: without the drain, the old container\n# (and a request in flight on it) would be killed 1 s after the switch.\nstop_timeout = \"1s\"\n\n[docker.route]\nlisten = \"127.0.0.1:{listen}\"\nport = 80\ndrain = \"10s\"\n"
        ))
        .await;

    // v1: the first deployment creates the route.
    assert_status(&stack.push_and_wait("v1", app("v1")).await, "succeeded");
    assert_eq!(get(listen, "/").await, Ok((200, "v1".into())));
    let load = Load::start(listen);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // v2: a good deployment; afterwards only v2 answers.
    let v2 = stack.push_and_wait("v2", app("v2")).await;
    assert_status(&v2, "succeeded");
    let after_v2 = Instant::now();
    assert!(log_text(&v2).contains("switched to"), "{}", log_text(&v2));

    // A crashing image fails its health gate; the route is untouched.
    let crash = stack.push_and_wait("crash", Behaviour::ExitsAtOnce).await;
    assert_status(&crash, "failed");
    assert!(!log_text(&crash).contains("switched to"));

    // v3, with a slow request in flight when the route switches: it
    // completes from the old container (v2) while new requests get v3.
    build_and_push(&stack.image("v3"), &app("v3"));
    stack.wait_log("v3", "waiting until it is healthy").await;
    let slow = tokio::spawn(get(listen, "/cgi-bin/slow?5"));
    let v3 = stack.outcome("v3").await;
    assert_status(&v3, "succeeded");
    let after_v3 = Instant::now();
    assert_eq!(slow.await.unwrap(), Ok((200, "v2".into())));
    let drained = log_text(&v3);
    assert!(
        drained.contains("the previous container drained in"),
        "{drained}"
    );
    assert!(
        !drained.contains("drained in 0.0s"),
        "the slow request should have held the old container: {drained}"
    );

    // An image whose HEALTHCHECK never passes.
    let sick = stack
        .push_and_wait(
            "sick",
            Behaviour::FailsHealthcheck {
                version: "sick".into(),
                port: 80,
            },
        )
        .await;
    assert_status(&sick, "failed");

    // v4: the third good deployment.
    assert_status(&stack.push_and_wait("v4", app("v4")).await, "succeeded");
    let after_v4 = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_no_failures(&load, "through five deployments");
    let versions = load.versions_since(after_v2);
    assert_eq!(
        versions.first().map(String::as_str),
        Some("v2"),
        "{versions:?}"
    );
    assert!(!versions.contains(&"v1".to_string()), "{versions:?}");
    assert_eq!(
        load.versions_since(after_v3).first().map(String::as_str),
        Some("v3")
    );
    assert_eq!(load.versions_since(after_v4), ["v4"]);
    for kept_alive in [false, true] {
        assert!(
            load.samples()
                .iter()
                .filter(|s| s.kept_alive == kept_alive)
                .count()
                > 100,
            "too few requests (kept_alive = {kept_alive})"
        );
    }

    // The daemon stops (SIGTERM) and dies (kill -9) under load: the proxy
    // is its own process, so not one request fails.
    assert!(stack.wharf.terminate().await.success());
    tokio::time::sleep(Duration::from_secs(1)).await;
    stack.wharf.launch().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stack.wharf.kill9();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stack.wharf.launch().await;
    assert_no_failures(&load, "while the daemon stopped and was killed");

    // The next deployment still switches cleanly. (The relaunched daemon
    // has a new port the registry does not know: deploy through the API.)
    build_and_push(&stack.image("v5"), &app("v5"));
    let (status, body) = stack
        .wharf
        .admin_post(
            "/api/admin/deploy",
            serde_json::json!({"project": stack.name, "stage": "dev", "tag": "v5"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let v5 = stack.outcome("v5").await;
    assert_status(&v5, "succeeded");
    let after_v5 = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_no_failures(&load, "through the deployment after the restarts");
    assert_eq!(load.versions_since(after_v5), ["v5"]);

    // The proxy itself restarts (as `systemctl restart wharf-proxy` would):
    // its routes come back from its file. While no proxy listens, new
    // connections are refused: those requests fail, and are counted.
    let failed_before = load.failures().len();
    let old_proxy = stack.proxy.pid().expect("the proxy wrote its pid");
    support::signal(old_proxy, "TERM");
    let down = Instant::now();
    assert!(
        support::eventually(Duration::from_secs(10), || gone(old_proxy)).await,
        "the proxy did not stop on SIGTERM"
    );
    let mut proxy = std::process::Command::new(support::BIN)
        .args(["proxy", "--state-dir"])
        .arg(stack.wharf.dir.join("state"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut restored = None;
    while down.elapsed() < Duration::from_secs(10) {
        if get(listen, "/").await == Ok((200, "v5".into())) {
            restored = Some(Instant::now());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let restored = restored.expect("the restarted proxy serves the route from its file");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let failed_in_restart = load.failures().len() - failed_before;
    let after_restart: Vec<Sample> = load
        .failures()
        .into_iter()
        .filter(|s| s.started > restored)
        .collect();
    assert!(
        after_restart.is_empty(),
        "failures after the restore: {after_restart:?}"
    );
    println!(
        "proxy restart: {:.0} ms without a listener, {failed_in_restart} request(s) refused in that window",
        (restored - down).as_secs_f64() * 1000.0
    );
    let samples = load.stop().await;

    // The admin API and the CLI list the route.
    let (_, routes) = stack.wharf.admin_get("/api/admin/routes").await;
    let route = &routes["routes"][0];
    assert_eq!(route["listen"], format!("127.0.0.1:{listen}"));
    assert_eq!(route["project"], stack.name.as_str());
    assert_eq!(route["image"], stack.image("v5"));
    assert_eq!(route["container"], format!("wharf-{}-dev", stack.name));
    let listed = stack.wharf.cli(&["routes"]);
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains(&stack.image("v5")),
        "{listed:?}"
    );
    let (_, metrics) = stack.wharf.admin_get("/metrics").await;
    let metrics = metrics.as_str().unwrap_or_default().to_string();
    assert!(
        metrics.contains(&format!(
            "wharf_routed_requests_total{{route=\"127.0.0.1:{listen}\",status=\"200\"}}"
        )),
        "{metrics}"
    );
    println!(
        "{} requests through the route; the only failures: {failed_in_restart} during the proxy's own restart",
        samples.len()
    );
    let _ = proxy.kill();
    let _ = proxy.wait();
}

/// wharf is killed right after the switch, before the old container was
/// renamed past the commit point: the names alone would say "not verified",
/// but the proxy's table says the new container serves, so recovery keeps
/// it, and traffic never notices.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_right_after_the_switch_keeps_the_new_container_serving() {
    if !docker_or_skip("a_crash_right_after_the_switch_keeps_the_new_container_serving") {
        return;
    }
    let mut stack = Stack::start("routes-crash").await;
    let listen = free_port();
    stack
        .project(&format!(
            "health = {{ http = {{ path = \"/\", port = 80 }} }}\nkeep_images = 0\n\n[docker.route]\nlisten = \"127.0.0.1:{listen}\"\nport = 80\ndrain = \"2s\"\n"
        ))
        .await;
    assert_status(&stack.push_and_wait("v1", app("v1")).await, "succeeded");
    let load = Load::start(listen);

    stack.wharf.terminate().await;
    stack
        .wharf
        .set_env("WHARF_TEST_PAUSE_AT", Some("docker:after-switch"));
    stack.wharf.launch().await;
    build_and_push(&stack.image("v2"), &app("v2"));
    let (status, body) = stack
        .wharf
        .admin_post(
            "/api/admin/deploy",
            serde_json::json!({"project": stack.name, "stage": "dev", "tag": "v2"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    stack.wait_log("v2", "pausing at docker:after-switch").await;
    let container = format!("wharf-{}-dev", stack.name);
    assert!(
        common::inspect(&format!("{container}-wharf-old")).is_some(),
        "the old container waits under the backup name"
    );
    stack.wharf.kill9();
    tokio::time::sleep(Duration::from_millis(500)).await;

    stack.wharf.set_env("WHARF_TEST_PAUSE_AT", None);
    stack.wharf.launch().await;
    let v2 = stack.outcome("v2").await;
    assert_status(&v2, "succeeded");
    let log = log_text(&v2);
    assert!(
        log.contains("whose route already serves"),
        "recovery read the proxy's table: {log}"
    );
    let after = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(load.versions_since(after), ["v2"]);
    assert!(common::inspect(&format!("{container}-wharf-old")).is_none());
    assert!(common::inspect(&format!("{container}-wharf-retired")).is_none());
    assert_no_failures(&load, "through a crash right after the switch");
    load.stop().await;

    // The serving container restarts (as a crash under its restart policy,
    // a dockerd restart or a reboot would restart it): it comes back on the
    // same loopback port, so the route answers again without a deployment.
    common::docker(&["restart", "-t", "0", &container]);
    assert_eq!(
        common::served(listen, "v2", Duration::from_secs(20))
            .await
            .as_deref(),
        Some("v2"),
        "the route's upstream moved when its container restarted"
    );
}
