//! The compose deployer end to end: the real wharf binary, the real Docker
//! engine, real `docker compose`/`docker-compose`, a real `docker-registry`,
//! and test images built `FROM scratch` with busybox (`busybox httpd`
//! serving a version string). No mocks.
//!
//! Each stack is a compose file with two services, `web` and `worker`, both
//! from the local registry and published on 127.0.0.1; wharf's project
//! deploys `web` only. The tests that need the engine skip (with a message)
//! when Docker, compose or the tools are missing, unless
//! `WHARF_REQUIRE_DOCKER=1`. Names carry the test name and the pid; guards
//! run `compose down -v` and remove the images even when a test fails.

// A panic in a test is a failed test: the no-panic lints are for the daemon.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::string_slice
)]

mod common;
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::load::{assert_no_failures, Load, ProxyGuard};
use common::{build_and_push, docker_or_skip, free_port, inspect, served, unique, Behaviour};
use common::{Cleanup, Registry};
use serde_json::{json, Value};
use support::{assert_status, log_text, Wharf};

/// One deployment (pull, up, wait, maybe a rollback) takes seconds here;
/// leave room for a loaded CI box.
const DEPLOY_LIMIT: Duration = Duration::from_secs(90);
/// The port busybox httpd listens on inside the test images.
const HTTP_PORT: u16 = 8000;

/// The compose found on this machine as argv (`docker compose` first, like
/// the plugin), or `None` after printing why (a panic with
/// `WHARF_REQUIRE_DOCKER=1`).
fn compose_or_skip(test: &str) -> Option<Vec<&'static str>> {
    if !docker_or_skip(test) {
        return None;
    }
    for argv in [&["docker", "compose"][..], &["docker-compose"][..]] {
        let works = Command::new(argv[0])
            .args(&argv[1..])
            .arg("version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if works {
            return Some(argv.to_vec());
        }
    }
    let why =
        "neither `docker compose` nor `docker-compose` works (apt-get install docker-compose)";
    if std::env::var("WHARF_REQUIRE_DOCKER").as_deref() == Ok("1") {
        panic!("{test}: {why}, and WHARF_REQUIRE_DOCKER=1");
    }
    eprintln!("SKIPPED {test}: {why} (set WHARF_REQUIRE_DOCKER=1 to fail instead)");
    None
}

/// A compose project the test brought up; `down -v` on drop.
struct ComposeProject {
    argv: Vec<&'static str>,
    file: PathBuf,
    name: String,
}

impl ComposeProject {
    /// Run compose on this project with `env`; panics with its output when
    /// it fails.
    fn run(&self, env: &[(&str, &str)], args: &[&str]) -> String {
        let output = Command::new(self.argv[0])
            .args(&self.argv[1..])
            .arg("-f")
            .arg(&self.file)
            .args(["-p", &self.name])
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .expect("run compose");
        assert!(
            output.status.success(),
            "compose {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    /// The id of the service's one running container (asked of the engine
    /// by compose's labels: quicker than starting compose).
    fn container(&self, service: &str) -> String {
        let project = format!("label=com.docker.compose.project={}", self.name);
        let service_label = format!("label=com.docker.compose.service={service}");
        let ids = common::docker(&[
            "ps",
            "-q",
            "--no-trunc",
            "--filter",
            &project,
            "--filter",
            &service_label,
        ]);
        let ids: Vec<&str> = ids.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(ids.len(), 1, "service {service}: containers {ids:?}");
        ids[0].trim().to_string()
    }
}

impl Drop for ComposeProject {
    fn drop(&mut self) {
        let _ = Command::new(self.argv[0])
            .args(&self.argv[1..])
            .arg("-f")
            .arg(&self.file)
            .args(["-p", &self.name, "down", "-v", "--timeout", "1"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// wharf, a registry, a compose file with `web` and `worker` running v1,
/// and the guards. Fields drop in order: wharf stops first, then compose
/// goes down, then the images, the registry and the folder go.
struct Stack {
    wharf: Wharf,
    compose: ComposeProject,
    _cleanup: Cleanup,
    _registry: Registry,
    _dir: tempfile::TempDir,
    /// wharf project and compose project name, unique to the test.
    name: String,
    web_repository: String,
    web_port: u16,
    worker_port: u16,
}

impl Stack {
    /// Push v1 of both services and bring the compose project up with it,
    /// as the operator would have before wharf.
    async fn start(test: &str, argv: Vec<&'static str>) -> Stack {
        Stack::start_with(test, argv, false).await
    }

    /// As [`Stack::start`]; `routed`: web publishes its port on an
    /// engine-chosen loopback port (a route's layout), and boots in 2 s.
    async fn start_with(test: &str, argv: Vec<&'static str>, routed: bool) -> Stack {
        let wharf = Wharf::start("").await;
        let registry = Registry::start(None);
        let name = unique(test);
        let web_repository = format!("{}/acme/{name}-web", registry.host());
        let worker_repository = format!("{}/acme/{name}-worker", registry.host());
        let cleanup = Cleanup {
            projects: Vec::new(),
            names: Vec::new(),
            repositories: vec![format!("{}/", registry.host())],
        };
        let dir = tempfile::tempdir().unwrap();
        let (web_port, worker_port) = (free_port(), free_port());
        let web_ports = if routed {
            format!("127.0.0.1::{HTTP_PORT}")
        } else {
            format!("127.0.0.1:{web_port}:{HTTP_PORT}")
        };
        let file = dir.path().join("compose.yml");
        // The operator's file: each image's tag comes from a variable; no
        // version key (the Compose Specification layout). busybox httpd as
        // PID 1 ignores SIGTERM: a short stop_grace_period keeps each
        // replacement from waiting compose's default 10 s.
        std::fs::write(
            &file,
            format!(
                "services:\n  web:\n    image: {web_repository}:${{WEB_TAG}}\n    restart: unless-stopped\n    stop_grace_period: 1s\n    ports:\n      - \"{web_ports}\"\n  worker:\n    image: {worker_repository}:${{WORKER_TAG:-v1}}\n    ports:\n      - \"127.0.0.1:{worker_port}:{HTTP_PORT}\"\n"
            ),
        )
        .unwrap();
        let compose = ComposeProject {
            argv,
            file,
            name: name.clone(),
        };
        let stack = Stack {
            wharf,
            compose,
            _cleanup: cleanup,
            _registry: registry,
            _dir: dir,
            name,
            web_repository,
            web_port,
            worker_port,
        };
        let v1 = |service: &str| Behaviour::ServesHealthy {
            version: format!("{service} v1"),
            port: HTTP_PORT,
        };
        let web_v1 = if routed {
            slow_app("web v1")
        } else {
            v1("web")
        };
        build_and_push(&stack.web_image("v1"), &web_v1);
        build_and_push(&format!("{worker_repository}:v1"), &v1("worker"));
        stack.compose.run(&[("WEB_TAG", "v1")], &["up", "-d"]);
        if !routed {
            assert_eq!(
                served(stack.web_port, "web v1", DEPLOY_LIMIT)
                    .await
                    .as_deref(),
                Some("web v1")
            );
        }
        assert_eq!(
            served(stack.worker_port, "worker v1", DEPLOY_LIMIT)
                .await
                .as_deref(),
            Some("worker v1")
        );
        stack
    }

    fn web_image(&self, tag: &str) -> String {
        format!("{}:{tag}", self.web_repository)
    }

    /// The wharf project: `web` of the compose file, every tag, stage `dev`.
    fn write_project(&self, service: &str) {
        self.wharf.write_project(
            &self.name,
            &project_file(
                &self.web_repository,
                &self.compose.file,
                service,
                &self.name,
            ),
        );
    }

    /// Push `tag` through the webhook and wait for its deployment to end.
    async fn deploy(&self, tag: &str) -> Value {
        let id = self.start_deploy(tag).await;
        self.finished(&id).await
    }

    /// Push `tag` through the webhook; its deployment's id.
    async fn start_deploy(&self, tag: &str) -> String {
        let accepted = self
            .wharf
            .push_until_accepted(&json!({ "image": self.web_image(tag) }).to_string())
            .await;
        accepted["deployments"][0]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no deployment: {accepted}"))
            .to_string()
    }

    /// Deployment `id` once its log contains `needle`.
    async fn logged(&self, id: &str, needle: &str) -> Value {
        let deadline = Instant::now() + DEPLOY_LIMIT;
        loop {
            let deployment = self.wharf.deployment(id).await;
            if log_text(&deployment).contains(needle) {
                return deployment;
            }
            assert!(Instant::now() < deadline, "{id} never logged {needle:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Wait for deployment `id` to end.
    async fn finished(&self, id: &str) -> Value {
        let deadline = Instant::now() + DEPLOY_LIMIT;
        loop {
            let deployment = self.wharf.deployment(id).await;
            if matches!(
                deployment["status"].as_str(),
                Some("succeeded" | "failed" | "interrupted")
            ) {
                return deployment;
            }
            assert!(
                Instant::now() < deadline,
                "deployment {id} still {} after {DEPLOY_LIMIT:?}\nlog:\n{}\nwharf:\n{}",
                deployment["status"],
                log_text(&deployment),
                self.wharf.output()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The image reference the service's container was created from.
    fn running_image(&self, service: &str) -> String {
        let container = self.compose.container(service);
        let state = inspect(&container).expect("container exists");
        state["Config"]["Image"].as_str().unwrap().to_string()
    }
}

/// An app that boots in 2 s (busybox httpd after `sleep 2`), with a slow
/// page at `/cgi-bin/slow?<seconds>`.
fn slow_app(version: &str) -> Behaviour {
    Behaviour::BootsSlowly {
        version: version.into(),
        port: HTTP_PORT,
    }
}

fn project_file(repository: &str, compose_file: &Path, service: &str, name: &str) -> String {
    format!(
        "image = \"{repository}\"\ndeployer = \"compose\"\n\n[stages.dev]\ntags = [\"*\"]\n\n[compose]\nfile = \"{}\"\nservice = \"{service}\"\ntag_variable = \"WEB_TAG\"\nproject_name = \"{name}\"\ntimeout = \"2m\"\nhealth_timeout = \"30s\"\ngrace = \"2s\"\n",
        compose_file.display()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_push_updates_only_the_named_service() {
    let test = "compose-update";
    let Some(argv) = compose_or_skip(test) else {
        return;
    };
    let stack = Stack::start(test, argv).await;
    let worker_before = stack.compose.container("worker");
    let web_before = stack.compose.container("web");
    let file_before = std::fs::read_to_string(&stack.compose.file).unwrap();
    stack.write_project("web");

    build_and_push(
        &stack.web_image("v2"),
        &Behaviour::ServesHealthy {
            version: "web v2".into(),
            port: HTTP_PORT,
        },
    );
    let deployment = stack.deploy("v2").await;
    assert_status(&deployment, "succeeded");

    assert_eq!(
        served(stack.web_port, "web v2", Duration::from_secs(10))
            .await
            .as_deref(),
        Some("web v2")
    );
    assert_eq!(stack.running_image("web"), stack.web_image("v2"));
    assert_ne!(stack.compose.container("web"), web_before);
    // The other service was not touched, and the operator's file neither.
    assert_eq!(stack.compose.container("worker"), worker_before);
    assert_eq!(
        served(stack.worker_port, "worker v1", Duration::from_secs(5))
            .await
            .as_deref(),
        Some("worker v1")
    );
    assert_eq!(
        std::fs::read_to_string(&stack.compose.file).unwrap(),
        file_before
    );
    // Every command and its output is in the deployment's log.
    let log = log_text(&deployment);
    for expected in ["WEB_TAG=v2", "pull web", "up -d --no-deps web", "healthy"] {
        assert!(log.contains(expected), "no '{expected}' in:\n{log}");
    }
    assert!(
        deployment["log"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["stream"] != "wharf"),
        "compose's own output is missing:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_image_rolls_back_to_the_previous_tag() {
    let test = "compose-rollback";
    let Some(argv) = compose_or_skip(test) else {
        return;
    };
    let stack = Stack::start(test, argv).await;
    let worker_before = stack.compose.container("worker");
    stack.write_project("web");

    // v2 exits at once; v3 serves but fails its healthcheck.
    build_and_push(&stack.web_image("v2"), &Behaviour::ExitsAtOnce);
    build_and_push(
        &stack.web_image("v3"),
        &Behaviour::FailsHealthcheck {
            version: "web v3".into(),
            port: HTTP_PORT,
        },
    );
    for (tag, why) in [("v2", "exit status 3"), ("v3", "unhealthy")] {
        let deployment = stack.deploy(tag).await;
        assert_status(&deployment, "failed");
        let reason = deployment["reason"].as_str().unwrap_or_default();
        assert!(reason.contains(why), "{tag}: {reason}");
        assert!(
            reason.contains("rolled back") && reason.contains("WEB_TAG=v1"),
            "{tag}: {reason}\nlog:\n{}",
            log_text(&deployment)
        );
        assert_eq!(
            served(stack.web_port, "web v1", Duration::from_secs(20))
                .await
                .as_deref(),
            Some("web v1"),
            "after {tag}"
        );
        assert_eq!(stack.running_image("web"), stack.web_image("v1"));
        assert_eq!(stack.compose.container("worker"), worker_before);
        if tag == "v2" {
            // The crashing container's own words made it into the log.
            let log = log_text(&deployment);
            assert!(log.contains("crashing on purpose"), "{log}");
        }
    }
}

/// A service behind `[compose.route]`, under continuous load: three good
/// deployments of an app that boots in 2 s, one image that crashes and one
/// whose healthcheck never passes, then a deployment after an interrupted
/// one left an extra container. Not one request fails; after each success
/// only the new version answers; a slow request in flight at the switch
/// completes from the old container.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_routed_service_is_replaced_under_load_without_a_failed_request() {
    let test = "compose-route";
    let Some(argv) = compose_or_skip(test) else {
        return;
    };
    let stack = Stack::start_with(test, argv, true).await;
    let proxy = ProxyGuard {
        pid_file: stack.wharf.dir.join("state/proxy.pid"),
    };
    let listen = free_port();
    stack.wharf.write_project(
        &stack.name,
        &format!(
            "{}\n[compose.route]\nlisten = \"127.0.0.1:{listen}\"\nport = {HTTP_PORT}\ndrain = \"10s\"\n",
            project_file(&stack.web_repository, &stack.compose.file, "web", &stack.name)
        ),
    );
    stack.wharf.wait_loaded(&stack.name).await;
    let web_containers = || {
        stack
            .compose
            .run(&[("WEB_TAG", "v1")], &["ps", "-q", "web"])
    };

    // v2: the first routed deployment creates the route; the operator's
    // v1 container is removed.
    build_and_push(&stack.web_image("v2"), &slow_app("web v2"));
    let v2 = stack.deploy("v2").await;
    assert_status(&v2, "succeeded");
    assert_eq!(
        served(listen, "web v2", Duration::from_secs(5))
            .await
            .as_deref(),
        Some("web v2")
    );
    assert_eq!(web_containers().lines().count(), 1, "{}", log_text(&v2));
    let load = Load::start(listen);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // v3, with a slow request in flight when the route switches.
    build_and_push(&stack.web_image("v3"), &slow_app("web v3"));
    let id = stack.start_deploy("v3").await;
    stack.logged(&id, "waiting up to").await;
    let slow = tokio::spawn(async move {
        reqwest::Client::new()
            .get(format!("http://127.0.0.1:{listen}/cgi-bin/slow?5"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    let v3 = stack.finished(&id).await;
    assert_status(&v3, "succeeded");
    let after_v3 = Instant::now();
    let proxy_log =
        || std::fs::read_to_string(stack.wharf.dir.join("state/proxy.log")).unwrap_or_default();
    assert_eq!(
        slow.await.unwrap().trim(),
        "web v2",
        "proxy log:\n{}",
        proxy_log()
    );
    let log = log_text(&v3);
    assert!(log.contains("--scale web=2"), "{log}");
    assert!(
        log.contains("drained in") && !log.contains("drained in 0.0s"),
        "{log}"
    );

    // A crashing image and one that never turns healthy: the route stays.
    build_and_push(&stack.web_image("crash"), &Behaviour::ExitsAtOnce);
    build_and_push(
        &stack.web_image("sick"),
        &Behaviour::FailsHealthcheck {
            version: "web sick".into(),
            port: HTTP_PORT,
        },
    );
    for (tag, why) in [("crash", "exit"), ("sick", "unhealthy")] {
        let failed = stack.deploy(tag).await;
        assert_status(&failed, "failed");
        let reason = failed["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains(why) && reason.contains("the route still serves"),
            "{tag}: {reason}"
        );
        assert_eq!(
            web_containers().lines().count(),
            1,
            "{tag}: {}",
            log_text(&failed)
        );
    }

    // v4: the third good deployment.
    build_and_push(&stack.web_image("v4"), &slow_app("web v4"));
    assert_status(&stack.deploy("v4").await, "succeeded");
    let after_v4 = Instant::now();

    // An interrupted deployment left a second container (as a crash after
    // `up --scale` would): the next one removes it first.
    stack.compose.run(
        &[("WEB_TAG", "v4")],
        &[
            "up",
            "-d",
            "--no-deps",
            "--no-recreate",
            "--scale",
            "web=2",
            "web",
        ],
    );
    assert_eq!(web_containers().lines().count(), 2);
    build_and_push(&stack.web_image("v5"), &slow_app("web v5"));
    let v5 = stack.deploy("v5").await;
    assert_status(&v5, "succeeded");
    let after_v5 = Instant::now();
    assert!(
        log_text(&v5).contains("an interrupted deployment left"),
        "{}",
        log_text(&v5)
    );
    assert_eq!(web_containers().lines().count(), 1, "{}", log_text(&v5));
    assert_eq!(stack.running_image("web"), stack.web_image("v5"));

    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(load.failures().is_empty(), "proxy log:\n{}", proxy_log());
    assert_no_failures(&load, "through the compose deployments");
    assert_eq!(
        load.versions_since(after_v3).first().map(String::as_str),
        Some("web v3")
    );
    let after = load.versions_since(after_v4);
    assert_eq!(
        after.first().map(String::as_str),
        Some("web v4"),
        "{after:?}"
    );
    assert_eq!(load.versions_since(after_v5), ["web v5"]);
    let samples = load.stop().await;
    assert!(samples.len() > 200, "only {} requests", samples.len());

    // The engine restarts the container (its restart policy, dockerd, a
    // reboot): its engine-chosen port changes, and the daemon moves the
    // route to where the same container is published now.
    let web = stack.compose.container("web");
    common::docker(&["restart", "-t", "0", &web]);
    assert_eq!(
        served(listen, "web v5", Duration::from_secs(30))
            .await
            .as_deref(),
        Some("web v5"),
        "the route did not follow its restarted container; proxy log:\n{}",
        proxy_log()
    );
    drop(proxy);
}

/// Needs no engine: validation reads the compose file when the project loads.
#[tokio::test(flavor = "multi_thread")]
async fn a_typo_in_the_service_is_rejected_at_load() {
    let wharf = Wharf::start("").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("compose.yml");
    std::fs::write(
        &file,
        "services:\n  web:\n    image: registry.example.com/acme/web:${WEB_TAG}\n  worker:\n    image: registry.example.com/acme/worker:v1\n",
    )
    .unwrap();
    let name = unique("compose-typo");
    let repository = "registry.example.com/acme/web";
    wharf.write_project(&name, &project_file(repository, &file, "wbe", &name));

    // The admin API lists the error, with the file and the services there are.
    let error = wharf.load_error(&name).await;
    for expected in [
        "service 'wbe' is not in",
        "its services are web, worker",
        "did you mean 'web'?",
    ] {
        assert!(error.contains(expected), "no '{expected}' in {error}");
    }

    // `wharf check` says the same, with file:line, and exits 1.
    let check = wharf.cli(&["check"]);
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(1), "{stdout}");
    let project_path = wharf.project_path(&name);
    let expected = format!("{}:", project_path.display());
    let line = stdout
        .lines()
        .find(|l| l.contains("service 'wbe' is not in"))
        .unwrap_or_else(|| panic!("no error line in:\n{stdout}"));
    assert!(line.contains(&expected), "{line}");

    // Fixed, it loads (the file watcher picks the edit up).
    wharf.write_project(&name, &project_file(repository, &file, "web", &name));
    wharf.wait_loaded(&name).await;
}
