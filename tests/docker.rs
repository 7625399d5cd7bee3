//! The docker deployer and auto-created projects, end to end: the real
//! wharf binary, the real Docker engine, a real `docker-registry` whose own
//! push notifications trigger wharf, and test images built `FROM scratch`
//! with busybox. No mocks.
//!
//! Every test skips (with a message) when Docker or the tools are missing,
//! unless `WHARF_REQUIRE_DOCKER=1`. Names carry the test name and the pid,
//! so the tests run in parallel; a guard removes containers and images even
//! when a test fails.

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

use common::{
    build_and_push, containers_of, docker, docker_or_skip, free_port, inspect, is_final, served,
    unique, Behaviour, Cleanup, Daemon, DockerStack, Registry, DEPLOY_LIMIT,
};
use serde_json::{json, Value};
use support::{assert_status, log_text, Wharf};

type Stack = DockerStack;

fn started_at(container: &str) -> (String, String) {
    let state = inspect(container).expect("container exists");
    (
        state["Id"].as_str().unwrap().to_string(),
        state["State"]["StartedAt"].as_str().unwrap().to_string(),
    )
}

const NO_AUTO_CREATE: &str = "[auto_create]\nenabled = false\n";
const AUTO_CREATE: &str = "[auto_create]\nenabled = true\nallow = [\"*\"]\n";

#[tokio::test(flavor = "multi_thread")]
async fn first_deploy_then_upgrade_serves_the_new_version_from_one_container() {
    if !docker_or_skip("first_deploy_then_upgrade") {
        return;
    }
    let stack = Stack::start("upgrade", NO_AUTO_CREATE, true).await;
    let port = free_port();
    stack
        .project(&format!(
            "ports = [\"127.0.0.1:{port}:80\"]\nstop_timeout = \"1s\"\nhealth = {{ grace = \"1s\" }}\nenv = {{ GREETING = \"hi\" }}\nkeep_images = 1"
        ))
        .await;

    // v1 has no HEALTHCHECK: healthy = still running after the grace period.
    let first = stack
        .push_and_wait(
            "v1",
            Behaviour::Serves {
                version: "v1".into(),
                port: 80,
            },
        )
        .await;
    assert_status(&first, "succeeded");
    assert!(log_text(&first).contains("still running after the grace period"));
    assert_eq!(
        served(port, "v1", Duration::from_secs(5)).await.as_deref(),
        Some("v1")
    );
    let container = inspect(&stack.container()).unwrap();
    let labels = &container["Config"]["Labels"];
    assert_eq!(labels["wharf.project"], stack.name.as_str());
    assert_eq!(labels["wharf.stage"], "dev");
    assert_eq!(labels["wharf.deployment"], first["id"]);
    assert_eq!(labels["wharf.image"], stack.image("v1").as_str());
    assert_eq!(
        container["HostConfig"]["RestartPolicy"]["Name"],
        "unless-stopped"
    );
    assert!(container["Config"]["Env"]
        .as_array()
        .unwrap()
        .contains(&json!("GREETING=hi")));
    // The registry's notification carried the manifest digest: pulled by it.
    assert!(
        container["Config"]["Image"]
            .as_str()
            .unwrap()
            .contains("@sha256:"),
        "{:#}",
        container["Config"]["Image"]
    );

    // v2 has a HEALTHCHECK: wharf waits for the engine to call it healthy.
    let second = stack
        .push_and_wait(
            "v2",
            Behaviour::ServesHealthy {
                version: "v2".into(),
                port: 80,
            },
        )
        .await;
    assert_status(&second, "succeeded");
    assert!(
        log_text(&second).contains("HEALTHCHECK healthy"),
        "{}",
        log_text(&second)
    );
    assert_eq!(
        served(port, "v2", Duration::from_secs(5)).await.as_deref(),
        Some("v2")
    );
    assert_eq!(containers_of(&stack.name), [stack.container()]);
    // keep_images = 1: v1's image went with the success of v2, v2's stays.
    let v1_gone = !common::docker_output(&["image", "inspect", &stack.image("v1")])
        .status
        .success();
    assert!(v1_gone, "{}", log_text(&second));
    assert!(log_text(&second).contains("keep_images: removed"));
    docker(&["image", "inspect", &stack.image("v2")]);
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_images_fail_and_the_previous_version_keeps_serving() {
    if !docker_or_skip("broken_images_fail") {
        return;
    }
    let stack = Stack::start("broken", NO_AUTO_CREATE, true).await;
    let port = free_port();
    stack
        .project(&format!(
            "ports = [\"127.0.0.1:{port}:80\"]\nstop_timeout = \"1s\"\nhealth = {{ grace = \"2s\", timeout = \"30s\" }}"
        ))
        .await;
    let good = stack
        .push_and_wait(
            "v2",
            Behaviour::Serves {
                version: "v2".into(),
                port: 80,
            },
        )
        .await;
    assert_status(&good, "succeeded");
    let (serving_id, _) = started_at(&stack.container());

    // Exits at once (restart policy unless-stopped would loop it forever).
    let crash = stack
        .push_and_wait("v3-crash", Behaviour::ExitsAtOnce)
        .await;
    assert_status(&crash, "failed");
    let reason = crash["reason"].as_str().unwrap();
    assert!(reason.contains("exit"), "{reason}");
    assert!(reason.contains("serves again"), "{reason}");
    let log = log_text(&crash);
    assert!(
        log.contains("[stderr] crashing on purpose"),
        "the crashed container's output is not in the log:\n{log}"
    );
    assert_eq!(
        served(port, "v2", Duration::from_secs(10)).await.as_deref(),
        Some("v2")
    );
    assert_eq!(containers_of(&stack.name), [stack.container()]);
    assert_eq!(
        started_at(&stack.container()).0,
        serving_id,
        "not the same container"
    );

    // Runs and serves, but its HEALTHCHECK fails.
    let sick = stack
        .push_and_wait(
            "v4-sick",
            Behaviour::FailsHealthcheck {
                version: "v4".into(),
                port: 80,
            },
        )
        .await;
    assert_status(&sick, "failed");
    let reason = sick["reason"].as_str().unwrap();
    assert!(reason.contains("unhealthy"), "{reason}");
    assert_eq!(
        served(port, "v2", Duration::from_secs(10)).await.as_deref(),
        Some("v2")
    );
    assert_eq!(containers_of(&stack.name), [stack.container()]);
    let restored = inspect(&stack.container()).unwrap();
    assert_eq!(restored["Id"], serving_id.as_str());
    assert_eq!(restored["State"]["Running"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tag_missing_from_the_registry_fails_and_leaves_the_old_container_untouched() {
    if !docker_or_skip("missing_tag") {
        return;
    }
    let stack = Stack::start("missing", NO_AUTO_CREATE, true).await;
    let port = free_port();
    stack
        .project(&format!(
            "ports = [\"127.0.0.1:{port}:8080\"]\nhealth = {{ http = {{ path = \"/\", port = 8080 }} }}"
        ))
        .await;
    let good = stack
        .push_and_wait(
            "v1",
            Behaviour::Serves {
                version: "v1".into(),
                port: 8080,
            },
        )
        .await;
    assert_status(&good, "succeeded");
    assert!(
        log_text(&good).contains("HTTP check passed"),
        "{}",
        log_text(&good)
    );
    let before = started_at(&stack.container());

    // A sender names a tag the registry does not have: the engine's pull fails.
    let (status, body) = stack
        .wharf
        .push(&json!({ "image": stack.image("v9-missing") }).to_string())
        .await;
    assert_eq!(status, 202, "{body}");
    let failed = stack.outcome("v9-missing").await;
    assert_status(&failed, "failed");
    let reason = failed["reason"].as_str().unwrap();
    assert!(reason.contains("cannot pull"), "{reason}");
    assert!(reason.contains("not touched"), "{reason}");
    assert_eq!(
        started_at(&stack.container()),
        before,
        "the old container was restarted or replaced"
    );
    assert_eq!(
        served(port, "v1", Duration::from_secs(5)).await.as_deref(),
        Some("v1")
    );
    assert_eq!(containers_of(&stack.name), [stack.container()]);
}

/// `docker --config <dir> …` with `stdin` fed in: the test's own client
/// configuration, never the machine's.
fn docker_with_config(config: &std::path::Path, args: &[&str], stdin: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("docker")
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run docker");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "docker {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).to_string()
}

/// A registry that refuses anonymous pulls: wharf pulls with the `auths`
/// entry `docker login` wrote to `$DOCKER_CONFIG/config.json`, says so in
/// the log, and neither the password nor the encoded entry reaches any log.
#[tokio::test(flavor = "multi_thread")]
async fn a_private_registry_is_pulled_with_the_docker_config_credentials() {
    if !docker_or_skip("private_registry") {
        return;
    }
    let password = format!("wharf-test-pw-{}", std::process::id());
    let registry = Registry::start_private("deployer", &password);
    let name = unique("private");
    let repository = format!("{}/acme/{name}", registry.host());
    let _cleanup = Cleanup {
        projects: vec![name.clone()],
        names: vec![format!("wharf-{name}-dev")],
        repositories: vec![format!("{}/", registry.host())],
    };
    let config = tempfile::tempdir().unwrap();
    docker_with_config(
        config.path(),
        &[
            "login",
            &registry.host(),
            "--username",
            "deployer",
            "--password-stdin",
        ],
        &password,
    );
    let image = format!("{repository}:v1");
    common::build_image(
        &image,
        &Behaviour::Serves {
            version: "v1".into(),
            port: 8080,
        },
    );
    docker_with_config(config.path(), &["push", &image], "");
    // Without the login the registry refuses: the credentials are needed.
    let anonymous = common::docker_output(&["pull", &image]);
    assert!(!anonymous.status.success(), "the registry is not private");

    let config_dir = config.path().display().to_string();
    let wharf = Wharf::start_with_env("", &[("DOCKER_CONFIG", &config_dir)]).await;
    let port = free_port();
    wharf.write_project(
        &name,
        &format!(
            "image = \"{repository}\"\n\n[stages.dev]\ntags = [\"*\"]\n\n[docker]\nports = [\"127.0.0.1:{port}:8080\"]\nhealth = {{ http = {{ path = \"/\", port = 8080 }} }}\n"
        ),
    );
    let accepted = wharf
        .push_until_accepted(&json!({ "image": image }).to_string())
        .await;
    let id = accepted["deployments"][0]["id"].as_str().unwrap();
    let deployment = wharf.wait_for(id, "succeeded", DEPLOY_LIMIT).await;
    let log = log_text(&deployment);
    assert!(
        log.contains(&format!(
            "using the credentials for {} from {config_dir}/config.json",
            registry.host()
        )),
        "{log}"
    );
    assert_eq!(
        served(port, "v1", Duration::from_secs(10)).await.as_deref(),
        Some("v1")
    );
    let encoded = std::fs::read_to_string(config.path().join("config.json")).unwrap();
    let entry: Value = serde_json::from_str(&encoded).unwrap();
    let auth = entry["auths"][registry.host()]["auth"]
        .as_str()
        .expect("docker login wrote an auths entry")
        .to_string();
    wharf.assert_no_secrets_logged(&[&password, &auth]);
    assert!(!log.contains(&password) && !log.contains(&auth), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_left_by_a_crash_is_restored_before_the_next_deploy() {
    if !docker_or_skip("crash_leftover") {
        return;
    }
    let stack = Stack::start("leftover", NO_AUTO_CREATE, true).await;
    let port = free_port();
    stack
        .project(&format!(
            "ports = [\"127.0.0.1:{port}:80\"]\nstop_timeout = \"1s\"\nhealth = {{ grace = \"1s\" }}"
        ))
        .await;
    let first = stack
        .push_and_wait(
            "v1",
            Behaviour::Serves {
                version: "v1".into(),
                port: 80,
            },
        )
        .await;
    assert_status(&first, "succeeded");
    // What wharf leaves when killed right after setting the old one aside.
    let backup = format!("{}-wharf-old", stack.container());
    docker(&["stop", "-t", "1", &stack.container()]);
    docker(&["rename", &stack.container(), &backup]);

    let second = stack
        .push_and_wait(
            "v2",
            Behaviour::Serves {
                version: "v2".into(),
                port: 80,
            },
        )
        .await;
    assert_status(&second, "succeeded");
    assert!(
        log_text(&second).contains("left by an interrupted deployment"),
        "{}",
        log_text(&second)
    );
    assert_eq!(
        served(port, "v2", Duration::from_secs(5)).await.as_deref(),
        Some("v2")
    );
    assert_eq!(containers_of(&stack.name), [stack.container()]);

    // Each `docker push` made the registry send its whole burst of events
    // (blob pushes, HEADs, the manifest): exactly one deployment per push.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, all) = stack
        .wharf
        .admin_get(&format!("/api/admin/deployments?project={}", stack.name))
        .await;
    let tags: Vec<_> = all["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["tag"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(tags, ["v2", "v1"], "{all:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_pushed_image_creates_its_project_and_deploys() {
    if !docker_or_skip("auto_create") {
        return;
    }
    let stack = Stack::start("auto", AUTO_CREATE, true).await;
    // An unprivileged EXPOSE: the host port is the same number.
    let port = free_port();
    let image = stack.image("v1");
    build_and_push(
        &image,
        &Behaviour::Serves {
            version: "auto v1".into(),
            port,
        },
    );
    let deployment = stack.outcome("v1").await;
    assert_status(&deployment, "succeeded");

    let file = stack.wharf.project_path(&stack.name);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.starts_with("# Auto-created by wharf at "), "{text}");
    assert!(
        text.contains(&format!("# {image} (auto_create.allow matched \"*\")")),
        "{text}"
    );
    assert!(text.contains("#   title        wharf test"), "{text}");
    assert!(
        text.contains("#   source       https://example.com/wharf-test"),
        "{text}"
    );
    let project: toml::Table = text.parse().unwrap();
    assert_eq!(project["image"].as_str(), Some(stack.repository.as_str()));
    assert_eq!(project["deployer"].as_str(), Some("docker"));
    let stage = &project["stages"]["dev"];
    assert_eq!(stage["tags"], toml::Value::Array(vec!["*".into()]));
    assert_eq!(stage["auto_deploy"].as_bool(), Some(true));
    let docker_table = project["docker"].as_table().unwrap();
    assert_eq!(
        docker_table["ports"],
        toml::Value::Array(vec![format!("127.0.0.1:{port}:{port}").into()])
    );
    assert_eq!(docker_table["restart"].as_str(), Some("unless-stopped"));
    let keys: Vec<_> = docker_table.keys().map(String::as_str).collect();
    assert_eq!(keys, ["ports", "restart"], "no other settings by default");
    let only_file: Vec<_> = std::fs::read_dir(stack.wharf.dir.join("projects"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(only_file, [format!("{}.toml", stack.name)]);

    let container = inspect(&stack.container()).expect("the auto-created project deployed");
    let bindings = &container["HostConfig"]["PortBindings"][format!("{port}/tcp")];
    assert_eq!(bindings[0]["HostIp"], "127.0.0.1", "{bindings:#}");
    assert_eq!(bindings[0]["HostPort"], port.to_string());
    assert_eq!(container["HostConfig"]["Privileged"], false);
    assert_eq!(container["HostConfig"]["NetworkMode"], "default");
    assert!(
        container["HostConfig"]["Binds"].is_null(),
        "{:#}",
        container["HostConfig"]["Binds"]
    );
    assert_eq!(
        served(port, "auto v1", Duration::from_secs(5))
            .await
            .as_deref(),
        Some("auto v1")
    );
    assert!(stack.wharf.output().contains("project auto-created"));
}

#[tokio::test(flavor = "multi_thread")]
async fn five_concurrent_pushes_of_one_new_image_create_one_project() {
    if !docker_or_skip("concurrent_auto_create") {
        return;
    }
    // No notifications: the five pushes are the test's own webhook calls.
    let stack = Stack::start("many", AUTO_CREATE, false).await;
    let port = free_port();
    let image = stack.image("v1");
    build_and_push(
        &image,
        &Behaviour::Serves {
            version: "many v1".into(),
            port,
        },
    );
    // Only in the registry now: inspecting it means pulling it.
    docker(&["rmi", &image]);

    let url = format!("{}/api/webhook/{}", stack.wharf.base, stack.wharf.secret());
    let body = json!({ "image": image }).to_string();
    let pushes: Vec<_> = (0..5)
        .map(|_| {
            let (url, body) = (url.clone(), body.clone());
            tokio::spawn(async move {
                let response = reqwest::Client::new()
                    .post(url)
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                (status, response.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let mut answers = Vec::new();
    for push in pushes {
        answers.push(push.await.unwrap());
    }
    let mut created = Vec::new();
    for (status, answer) in &answers {
        assert_eq!(*status, 202, "{answer:#}");
        assert_eq!(
            answer["deployments"].as_array().unwrap().len(),
            1,
            "{answer:#}"
        );
        assert_eq!(answer["deployments"][0]["project"], stack.name.as_str());
        if let Some(name) = answer["created_project"].as_str() {
            created.push(name.to_string());
        }
    }
    assert_eq!(created, [stack.name.as_str()], "{answers:#?}");
    let files: Vec<_> = std::fs::read_dir(stack.wharf.dir.join("projects"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, [format!("{}.toml", stack.name)]);

    // One of the five runs to the end (the others are superseded or run
    // after it); the service is up once.
    let deadline = Instant::now() + DEPLOY_LIMIT;
    loop {
        let (_, listing) = stack
            .wharf
            .admin_get(&format!("/api/admin/deployments?project={}", stack.name))
            .await;
        let list = listing["deployments"].as_array().unwrap().clone();
        assert_eq!(list.len(), 5, "{listing:#}");
        if list.iter().all(|d| is_final(&d["status"])) {
            assert!(
                list.iter().any(|d| d["status"] == "succeeded"),
                "{listing:#}"
            );
            assert!(
                list.iter()
                    .all(|d| matches!(d["status"].as_str(), Some("succeeded" | "superseded"))),
                "{listing:#}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{listing:#}\n{}",
            stack.wharf.output()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        served(port, "many v1", Duration::from_secs(5))
            .await
            .as_deref(),
        Some("many v1")
    );
    assert_eq!(containers_of(&stack.name), [stack.container()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn start_first_keeps_the_old_container_running_until_the_new_one_is_healthy() {
    if !docker_or_skip("start_first") {
        return;
    }
    let stack = Stack::start("startfirst", NO_AUTO_CREATE, true).await;
    // No fixed host port: the engine picks one for each container.
    stack
        .project(
            "strategy = \"start-first\"\nports = [\"127.0.0.1::80\"]\nhealth = { http = { path = \"/\", port = 80 } }",
        )
        .await;
    let first = stack
        .push_and_wait(
            "v1",
            Behaviour::Serves {
                version: "v1".into(),
                port: 80,
            },
        )
        .await;
    assert_status(&first, "succeeded");
    let before = started_at(&stack.container());

    let sick = stack
        .push_and_wait(
            "v2-sick",
            Behaviour::FailsHealthcheck {
                version: "v2".into(),
                port: 80,
            },
        )
        .await;
    assert_status(&sick, "failed");
    assert!(
        !log_text(&sick).contains("stopping the previous container"),
        "{}",
        log_text(&sick)
    );
    assert_eq!(
        started_at(&stack.container()),
        before,
        "start-first stopped or replaced the serving container"
    );

    let good = stack
        .push_and_wait(
            "v3",
            Behaviour::Serves {
                version: "v3".into(),
                port: 80,
            },
        )
        .await;
    assert_status(&good, "succeeded");
    assert_eq!(containers_of(&stack.name), [stack.container()]);
    let container = inspect(&stack.container()).unwrap();
    assert_eq!(
        container["Config"]["Labels"]["wharf.image"],
        stack.image("v3").as_str()
    );
    let port: u16 = container["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        served(port, "v3", Duration::from_secs(5)).await.as_deref(),
        Some("v3")
    );
}

/// No engine behind DOCKER_HOST (needs no Docker, so it always runs): the
/// unknown image still gets a project, without ports, saying why; its
/// deployment fails as unavailable and the daemon keeps answering.
#[tokio::test(flavor = "multi_thread")]
async fn an_image_that_cannot_be_inspected_still_gets_a_project_without_ports() {
    let socket = std::env::temp_dir().join(format!("wharf-no-engine-{}.sock", std::process::id()));
    let docker_host = format!("unix://{}", socket.display());
    let daemon = Daemon::start(AUTO_CREATE, &[("DOCKER_HOST", &docker_host)]);
    let (secret, token) = daemon.secrets();
    let http = reqwest::Client::new();
    let response = http
        .post(format!("{}/api/webhook/{secret}", daemon.base))
        // `ghost_app` becomes the project name `ghost-app`.
        .body(r#"{"image": "registry.example.com:5000/acme/ghost_app:v1"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["created_project"], "ghost-app", "{body:#}");
    let id = body["deployments"][0]["id"].as_str().unwrap().to_string();

    let text = std::fs::read_to_string(daemon.dir.path().join("projects/ghost-app.toml")).unwrap();
    assert!(
        text.contains("NO PORTS: wharf could not inspect the image"),
        "{text}"
    );
    assert!(text.contains("cannot reach the Docker engine"), "{text}");
    let project: toml::Table = text.parse().unwrap();
    assert!(project["docker"].get("ports").is_none(), "{text}");

    let deadline = Instant::now() + Duration::from_secs(20);
    let deployment = loop {
        let deployment: Value = http
            .get(format!("{}/api/admin/deployments/{id}", daemon.base))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if is_final(&deployment["status"]) {
            break deployment;
        }
        assert!(Instant::now() < deadline, "{deployment:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(deployment["status"], "failed", "{deployment:#}");
    let reason = deployment["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("unavailable: cannot reach the Docker engine"),
        "{reason}"
    );
    assert!(reason.contains(&socket.display().to_string()), "{reason}");
    assert!(
        daemon.output().contains("cannot inspect the image"),
        "{}",
        daemon.output()
    );
    let health = http
        .get(format!("{}/healthz", daemon.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
}

/// What a crash of wharf in the middle of a replacement leaves, once wharf
/// has started again and re-run the deployment.
struct AfterCrash {
    stack: Stack,
    port: u16,
    /// The deployment of v4 that wharf was killed in, after its re-run.
    deployment: Value,
}

/// v3 serves on a fixed port; v4 is pushed with the `WHARF_TEST_PAUSE_AT`
/// test hook holding the replacement at `step`; wharf gets SIGKILL there
/// and starts again without the hook. `v4_healthy`: v4 answers the health
/// check; else it runs but nothing answers on the checked port, so it can
/// never pass the gate (and the re-run fails there too).
async fn killed_during_replacement(test: &str, step: &str, v4_healthy: bool) -> AfterCrash {
    // No registry notifications: the webhook URL's port changes with each
    // launch, so the test pushes itself.
    let mut stack = Stack::start(test, NO_AUTO_CREATE, false).await;
    let port = free_port();
    stack
        .project(&format!(
            "ports = [\"127.0.0.1:{port}:80\"]\nstop_timeout = \"1s\"\nhealth = {{ http = {{ path = \"/\", port = 80 }}, timeout = \"10s\" }}"
        ))
        .await;
    build_and_push(
        &stack.image("v3"),
        &Behaviour::Serves {
            version: "v3".into(),
            port: 80,
        },
    );
    let accepted = stack
        .wharf
        .push_until_accepted(&json!({ "image": stack.image("v3") }).to_string())
        .await;
    let id = accepted["deployments"][0]["id"].as_str().unwrap();
    let first = stack.wharf.wait_for(id, "succeeded", DEPLOY_LIMIT).await;
    assert_status(&first, "succeeded");
    assert_eq!(
        served(port, "v3", Duration::from_secs(5)).await.as_deref(),
        Some("v3")
    );

    // Only this launch carries the hook, so v3's deployment ran unpaused.
    let hook = format!("docker:{step}");
    stack.wharf.terminate().await;
    stack
        .wharf
        .set_env("WHARF_TEST_PAUSE_AT", Some(hook.as_str()));
    stack.wharf.launch().await;
    let v4_port = if v4_healthy { 80 } else { 8080 };
    build_and_push(
        &stack.image("v4"),
        &Behaviour::Serves {
            version: "v4".into(),
            port: v4_port,
        },
    );
    let accepted = stack
        .wharf
        .push_until_accepted(&json!({ "image": stack.image("v4") }).to_string())
        .await;
    let id = accepted["deployments"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let paused = format!("pausing at {hook}");
    let deadline = Instant::now() + DEPLOY_LIMIT;
    loop {
        let deployment = stack.wharf.deployment(&id).await;
        if log_text(&deployment).contains(&paused) {
            break;
        }
        assert!(
            Instant::now() < deadline && !is_final(&deployment["status"]),
            "the replacement never paused at {hook}: {deployment:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stack.wharf.kill9();

    stack.wharf.set_env("WHARF_TEST_PAUSE_AT", None);
    stack.wharf.launch().await;
    let deployment = stack.outcome("v4").await;
    AfterCrash {
        stack,
        port,
        deployment,
    }
}

impl AfterCrash {
    /// One container is left, under the stage's name, running `tag`, and
    /// it serves `tag` on the fixed port.
    async fn assert_serves(&self, tag: &str) {
        let stack = &self.stack;
        assert_eq!(
            served(self.port, tag, Duration::from_secs(10))
                .await
                .as_deref(),
            Some(tag),
            "log:\n{}",
            log_text(&self.deployment)
        );
        assert_eq!(
            containers_of(&stack.name),
            [stack.container()],
            "a backup or new container was left: {}",
            log_text(&self.deployment)
        );
        let container = inspect(&stack.container()).unwrap();
        assert_eq!(
            container["Config"]["Labels"]["wharf.image"],
            stack.image(tag).as_str()
        );
        assert_eq!(container["State"]["Running"], true);
    }

    /// Killed before the commit point: v3 serves again, and the re-run of
    /// the never-healthy v4 ends `failed`, saying why.
    async fn assert_v3_restored(&self) {
        assert_status(&self.deployment, "failed");
        let reason = self.deployment["reason"].as_str().unwrap();
        assert!(reason.contains("not healthy within 10s"), "{reason}");
        assert!(reason.contains("serves again"), "{reason}");
        let log = log_text(&self.deployment);
        assert!(log.contains("running it again"), "{log}");
        assert!(log.contains("left by an interrupted deployment"), "{log}");
        self.assert_serves("v3").await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_after_the_old_container_is_renamed_restores_it() {
    if !docker_or_skip("crash_after_rename") {
        return;
    }
    let after = killed_during_replacement("crashrename", "after-rename", false).await;
    after.assert_v3_restored().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_after_the_old_container_is_stopped_restores_it() {
    if !docker_or_skip("crash_after_stop") {
        return;
    }
    let after = killed_during_replacement("crashstop", "after-stop", false).await;
    after.assert_v3_restored().await;
}

/// The new container runs and is not (yet) unhealthy when wharf dies: it is
/// still unverified, so the previous one is what must serve afterwards.
#[tokio::test(flavor = "multi_thread")]
async fn a_crash_during_the_health_gate_restores_the_previous_container() {
    if !docker_or_skip("crash_health_gate") {
        return;
    }
    let after = killed_during_replacement("crashgate", "health-gate", false).await;
    after.assert_v3_restored().await;
}

/// Past the commit point the new container is the verified one: it is what
/// serves afterwards, and the re-run deploys it again and succeeds.
#[tokio::test(flavor = "multi_thread")]
async fn a_crash_after_the_commit_point_keeps_the_new_container() {
    if !docker_or_skip("crash_after_commit") {
        return;
    }
    let after = killed_during_replacement("crashcommit", "after-commit", true).await;
    assert_status(&after.deployment, "succeeded");
    let log = log_text(&after.deployment);
    assert!(
        log.contains("had passed its health gate, so"),
        "the recovery did not see the commit point:\n{log}"
    );
    after.assert_serves("v4").await;
}

/// What [`StallingProxy`] does to the body of a blob a client GETs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Blobs {
    /// Passed through, like everything else.
    Pass,
    /// The headers are passed; not one byte of the body.
    Stall,
    /// The headers are passed, then the body two bytes every 250 ms: the
    /// pull keeps making (very slow) progress.
    Trickle,
}

/// A loopback TCP proxy in front of a real registry: it forwards every byte
/// both ways, except the bodies of blob downloads once told otherwise — a
/// registry that stalls in the middle of a pull. One thread per direction
/// and connection; all of them end when the proxy drops.
struct StallingProxy {
    port: u16,
    blobs: std::sync::Arc<std::sync::Mutex<Blobs>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl StallingProxy {
    fn start(upstream: u16) -> StallingProxy {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let blobs = Arc::new(Mutex::new(Blobs::Pass));
        let stop = Arc::new(AtomicBool::new(false));
        let (mode, stopped) = (blobs.clone(), stop.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                // Set by the request side when this connection asks for a
                // blob, read by the answer side (one request at a time).
                let held = Arc::new(Mutex::new(None::<Blobs>));
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (mode, request_held, stopped2) = (mode.clone(), held.clone(), stopped.clone());
                std::thread::spawn(move || forward_requests(client, server, &mode, &request_held));
                std::thread::spawn(move || forward_answers(s2, c2, &held, &stopped2));
            }
        });
        StallingProxy { port, blobs, stop }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn set(&self, blobs: Blobs) {
        *self.blobs.lock().unwrap() = blobs;
    }
}

impl Drop for StallingProxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wake the accept loop so that it sees `stop`.
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Client → registry: everything, noting when a blob is asked for while
/// blobs are not passed.
fn forward_requests(
    mut from: std::net::TcpStream,
    mut to: std::net::TcpStream,
    mode: &std::sync::Mutex<Blobs>,
    held: &std::sync::Mutex<Option<Blobs>>,
) {
    use std::io::{Read, Write};
    let mut buffer = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let text = String::from_utf8_lossy(&buffer[..n]);
        let mode = *mode.lock().unwrap();
        if mode != Blobs::Pass && text.starts_with("GET ") && text.contains("/blobs/sha256:") {
            *held.lock().unwrap() = Some(mode);
        }
        if to.write_all(&buffer[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

/// Registry → client: everything, except a held blob's body.
fn forward_answers(
    mut from: std::net::TcpStream,
    mut to: std::net::TcpStream,
    held: &std::sync::Mutex<Option<Blobs>>,
    stop: &std::sync::atomic::AtomicBool,
) {
    use std::io::{Read, Write};
    let mut buffer = [0u8; 16 * 1024];
    let mut answer = Vec::new();
    loop {
        let n = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let Some(mode) = *held.lock().unwrap() else {
            if to.write_all(&buffer[..n]).is_err() {
                break;
            }
            continue;
        };
        answer.extend_from_slice(&buffer[..n]);
        let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        // Read the rest of the body from the registry, so it is all here.
        from.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        while let Ok(n) = from.read(&mut buffer) {
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buffer[..n]);
        }
        let (head, body) = answer.split_at(end + 4);
        if to.write_all(head).is_err() {
            return;
        }
        let mut body = body.iter().copied();
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(250));
            if mode == Blobs::Trickle {
                let bytes: Vec<u8> = body.by_ref().take(2).collect();
                if to.write_all(&bytes).is_err() {
                    return;
                }
            }
        }
        return;
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

/// v1 serves, pulled through the proxy; then v2 is only in the registry and
/// the proxy treats blob bodies as `blobs` while wharf pulls it. Returns the
/// deployment of v2 once it ended, and how long it took.
async fn pull_through_a_stalling_registry(
    test: &str,
    blobs: Blobs,
    timeouts: &str,
) -> (Value, Duration) {
    let mut stack = Stack::start(test, NO_AUTO_CREATE, false).await;
    let proxy = StallingProxy::start(stack.registry.port);
    stack.repository = format!("{}/acme/{}", proxy.host(), stack.name);
    // Removed with the stack's own, once its containers are gone.
    stack
        .cleanup
        .repositories
        .push(format!("{}/", proxy.host()));
    let port = free_port();
    stack
        .project(&format!(
            "ports = [\"127.0.0.1:{port}:80\"]\nstop_timeout = \"1s\"\nhealth = {{ grace = \"1s\" }}\n{timeouts}"
        ))
        .await;
    for version in ["v1", "v2"] {
        build_and_push(
            &stack.image(version),
            &Behaviour::Serves {
                version: version.into(),
                port: 80,
            },
        );
    }
    let accepted = stack
        .wharf
        .push_until_accepted(&json!({ "image": stack.image("v1") }).to_string())
        .await;
    let id = accepted["deployments"][0]["id"].as_str().unwrap();
    let first = stack.wharf.wait_for(id, "succeeded", DEPLOY_LIMIT).await;
    assert_status(&first, "succeeded");
    let before = started_at(&stack.container());

    // The engine must fetch v2's own layer and config from the registry.
    docker(&["rmi", &stack.image("v2")]);
    proxy.set(blobs);
    let started = Instant::now();
    let accepted = stack
        .wharf
        .push_until_accepted(&json!({ "image": stack.image("v2") }).to_string())
        .await;
    let id = accepted["deployments"][0]["id"].as_str().unwrap();
    let deadline = Instant::now() + DEPLOY_LIMIT;
    let deployment = loop {
        let deployment = stack.wharf.deployment(id).await;
        if is_final(&deployment["status"]) {
            break deployment;
        }
        assert!(
            Instant::now() < deadline,
            "the stalled pull never ended: {deployment:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let took = started.elapsed();
    assert_eq!(
        served(port, "v1", Duration::from_secs(5)).await.as_deref(),
        Some("v1"),
        "{}",
        log_text(&deployment)
    );
    assert_eq!(started_at(&stack.container()), before, "v1 was touched");
    assert_eq!(containers_of(&stack.name), [stack.container()]);
    (deployment, took)
}

/// A registry that stops sending in the middle of a blob: the pull fails
/// on `pull_idle_timeout`, long before the stall would end by itself.
#[tokio::test(flavor = "multi_thread")]
async fn a_pull_that_stalls_fails_on_the_idle_timeout_and_v1_keeps_serving() {
    if !docker_or_skip("pull_idle_timeout") {
        return;
    }
    let (deployment, took) = pull_through_a_stalling_registry(
        "pullidle",
        Blobs::Stall,
        "pull_idle_timeout = \"2s\"\npull_timeout = \"5m\"",
    )
    .await;
    assert_status(&deployment, "failed");
    let reason = deployment["reason"].as_str().unwrap();
    assert!(
        reason.contains("the pull made no progress for 2s (pull_idle_timeout)"),
        "{reason}"
    );
    assert!(reason.contains("not touched"), "{reason}");
    assert!(took < Duration::from_secs(20), "{took:?}");
}

/// A registry that sends a blob so slowly that it never ends, yet never
/// goes quiet for `pull_idle_timeout`: the pull fails on `pull_timeout`.
#[tokio::test(flavor = "multi_thread")]
async fn a_pull_that_trickles_fails_on_the_overall_timeout_and_v1_keeps_serving() {
    if !docker_or_skip("pull_timeout") {
        return;
    }
    let (deployment, took) = pull_through_a_stalling_registry(
        "pulltrickle",
        Blobs::Trickle,
        "pull_idle_timeout = \"3s\"\npull_timeout = \"6s\"",
    )
    .await;
    assert_status(&deployment, "failed");
    let reason = deployment["reason"].as_str().unwrap();
    assert!(
        reason.contains("the pull did not finish within 6s (pull_timeout)"),
        "{reason}"
    );
    assert!(took < Duration::from_secs(20), "{took:?}");
}
