//! End to end, with the real binary on a real port: the secret URL, payload
//! validation, the script deployer's environment, rotation, and that no
//! secret reaches the log.

// A panic in a test is a failed test: the no-panic lints are for the daemon.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::string_slice
)]

mod support;

use std::time::Duration;

use serde_json::json;
use support::{read, script_project, Wharf};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread")]
async fn a_push_runs_the_script_with_the_deployment_environment() {
    let wharf = Wharf::start("").await;
    let env_file = wharf.dir.join("env.out");
    wharf.write_project(
        "web",
        &script_project(
            "localhost:5000/acme/web",
            &format!("env | grep ^WHARF_ | sort > {}", env_file.display()),
            "[stages.staging]\ntags = [\"main-*\"]\n[stages.prod]\ntags = [\"v*\"]\nauto_deploy = false\n",
        ),
    );
    // The project file was written after start: the watcher picks it up.
    let digest = format!("sha256:{}", "ab".repeat(32));
    let body = wharf
        .push_until_accepted(
            &json!({"image": "localhost:5000/acme/web:main-3f2a", "digest": digest}).to_string(),
        )
        .await;
    assert_eq!(body["created_project"], json!(null));
    let deployments = body["deployments"].as_array().unwrap();
    assert_eq!(deployments.len(), 1, "{body}");
    assert_eq!(deployments[0]["project"], "web");
    assert_eq!(deployments[0]["stage"], "staging");
    assert_eq!(deployments[0]["tag"], "main-3f2a");
    assert_eq!(deployments[0]["status"], "queued");
    assert_eq!(body["ignored"], json!([]));
    let id = deployments[0]["id"].as_str().unwrap();
    let done = wharf.wait_for(id, "succeeded", WAIT).await;

    let env = read(&env_file);
    let expected = format!(
        "WHARF_DEPLOYMENT_ID={id}\nWHARF_DIGEST={digest}\nWHARF_IMAGE=localhost:5000/acme/web:main-3f2a\n\
         WHARF_PROJECT=web\nWHARF_REPOSITORY=localhost:5000/acme/web\nWHARF_STAGE=staging\nWHARF_TAG=main-3f2a\n"
    );
    assert_eq!(env, expected);
    let log: Vec<_> = done["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["text"].as_str().unwrap().to_string())
        .collect();
    assert!(
        log.iter()
            .any(|l| l.contains("deploying localhost:5000/acme/web@sha256:")),
        "{log:?}"
    );

    // No stage matches: 200 with the reason, nothing recorded.
    let (status, body) = wharf
        .push(r#"{"image": "localhost:5000/acme/web:feature-x"}"#)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["deployments"], json!([]));
    assert_eq!(
        body["ignored"],
        json!(["project web: no stage matches tag 'feature-x'"])
    );

    // Normalization: `nginx` is docker.io/library/nginx.
    wharf.write_project(
        "proxy",
        &script_project(
            "docker.io/library/nginx",
            "true",
            "[stages.live]\ntags = [\"*\"]\n",
        ),
    );
    let body = wharf
        .push_until_accepted(r#"{"image": "nginx:1.27"}"#)
        .await;
    assert_eq!(body["deployments"][0]["project"], "proxy");

    let (secret, token) = wharf.settings();
    wharf.assert_no_secrets_logged(&[&secret, &token]);
}

/// Everything in a response that must be identical, in a comparable form.
async fn snapshot(response: reqwest::Response) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let status = response.status().as_u16();
    let mut headers: Vec<_> = response
        .headers()
        .iter()
        .filter(|(name, _)| name.as_str() != "date")
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
        .collect();
    headers.sort();
    let body = response.bytes().await.unwrap().to_vec();
    (status, headers, body)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_secret_is_byte_identical_to_an_unknown_path() {
    let wharf = Wharf::start("[webhook]\nbody_limit = 100\n").await;
    let client = reqwest::Client::new();
    let unknown = snapshot(
        client
            .post(format!("{}/no/such/path", wharf.base))
            .body("{}")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(unknown.0, 404);
    let secret = wharf.secret();
    let long = "a".repeat(5000);
    let near_miss = format!("{}x", &secret[..secret.len() - 1]);
    let wrong_secrets = [
        "wrong",
        "00000000-0000-4000-8000-000000000000",
        near_miss.as_str(),
        "%00%ff",
        "..%2F..",
        long.as_str(),
    ];
    let valid_body = r#"{"image": "nginx:1"}"#;
    let huge_body = "x".repeat(10_000);
    for wrong in wrong_secrets {
        for body in [valid_body, "not json", huge_body.as_str(), ""] {
            let got = snapshot(
                client
                    .post(format!("{}/api/webhook/{wrong}", wharf.base))
                    .header("Content-Type", "application/json")
                    .body(body.to_string())
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            assert_eq!(
                got,
                unknown,
                "secret {wrong:?} with body {:?}",
                &body[..body.len().min(20)]
            );
        }
    }
    for path in [
        "/api/webhook/",
        "/api/webhook",
        &format!("/api/webhook/{secret}/extra"),
    ] {
        let got = snapshot(
            client
                .post(format!("{}{path}", wharf.base))
                .body(valid_body)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(got, unknown, "{path}");
    }
    // GET on the real secret URL is not a route either.
    let got = snapshot(
        client
            .get(format!("{}/api/webhook/{secret}", wharf.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(got.0, 404);
    assert_eq!(got.2, unknown.2);
    wharf.assert_no_secrets_logged(&[&secret, &wharf.token()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_bodies_get_clear_errors() {
    let wharf = Wharf::start("[webhook]\nbody_limit = 1024\n").await;
    let too_big = json!({"image": "nginx:1", "pad": "x".repeat(2000)}).to_string();
    let (status, body) = wharf.push(&too_big).await;
    assert_eq!(status, 413, "{body}");
    assert!(body["error"].as_str().unwrap().contains("1024"), "{body}");

    let long_tag = format!("nginx:{}", "t".repeat(129));
    let cases: Vec<(String, &str)> = vec![
        ("not json".into(), "JSON"),
        ("[1, 2]".into(), ""),
        ("{}".into(), ""),
        (r#"{"digest": "sha256:00"}"#.into(), ""),
        (r#"{"image": 5}"#.into(), "image"),
        (r#"{"image": "nginx"}"#.into(), "tag"),
        (r#"{"image": "Acme/Web:1"}"#.into(), "lowercase"),
        (r#"{"image": "acme web:1"}"#.into(), ""),
        (r#"{"image": "acme/$(reboot):1"}"#.into(), ""),
        (r#"{"image": "acme/web;reboot:1"}"#.into(), ""),
        (r#"{"image": "acme/../web:1"}"#.into(), ""),
        (r#"{"image": "acme/web:v1;reboot"}"#.into(), "tag"),
        (json!({ "image": long_tag }).to_string(), "tag"),
        (
            r#"{"image": "acme/web:1", "digest": "md5:abc"}"#.into(),
            "digest",
        ),
    ];
    for (input, needle) in cases {
        let (status, body) = wharf.push(&input).await;
        assert_eq!(status, 400, "{input}: {body}");
        let error = body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{input}: {body}"));
        assert!(!error.is_empty());
        assert!(
            error.to_lowercase().contains(&needle.to_lowercase()),
            "{input}: {error}"
        );
    }
    // Still alive and well.
    let (status, _) = wharf.push(r#"{"image": "nginx:1"}"#).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn rotation_retires_the_old_secret_at_once_and_persists() {
    let mut wharf = Wharf::start("").await;
    let (old, token) = wharf.settings();
    let body = r#"{"image": "nginx:1"}"#;
    assert_eq!(wharf.push(body).await.0, 200);

    let client = reqwest::Client::new();
    let refused = client
        .post(format!("{}/api/admin/rotate", wharf.base))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    let refused = client
        .post(format!("{}/api/admin/rotate", wharf.base))
        .bearer_auth("not-the-token")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 401);

    let (status, rotated) = wharf.admin_post("/api/admin/rotate", json!(null)).await;
    assert_eq!(status, 200, "{rotated}");
    let new = rotated["webhook_secret"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    assert_eq!(uuid::Uuid::parse_str(&new).unwrap().get_version_num(), 4);
    assert_eq!(
        rotated["webhook_url"],
        format!("{}/api/webhook/{new}", wharf.base)
    );
    assert_eq!(wharf.status_with_secret(&old, body).await, 404);
    assert_eq!(wharf.status_with_secret(&new, body).await, 200);
    assert_eq!(wharf.settings(), (new.clone(), token.clone()));

    // Persisted across a restart.
    wharf.terminate().await;
    wharf.launch().await;
    assert_eq!(wharf.status_with_secret(&old, body).await, 404);
    assert_eq!(wharf.status_with_secret(&new, body).await, 200);

    // `wharf rotate` while the daemon runs: the file changes, the daemon follows.
    let output = wharf.cli(&["rotate"]);
    assert!(output.status.success(), "{output:?}");
    let newest = wharf.secret();
    assert!(String::from_utf8_lossy(&output.stdout).contains(&newest));
    let mut retired = false;
    for _ in 0..40 {
        if wharf.status_with_secret(&new, body).await == 404 {
            retired = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(retired, "the rotated-away secret still works after 2 s");
    assert_eq!(wharf.status_with_secret(&newest, body).await, 200);
    wharf.assert_no_secrets_logged(&[&old, &new, &newest, &token]);
}

#[tokio::test(flavor = "multi_thread")]
async fn settings_are_private_and_an_unparsable_file_stops_startup() {
    let wharf = Wharf::start("").await;
    use std::os::unix::fs::PermissionsExt;
    let settings = wharf.dir.join("state/settings.toml");
    let mode = std::fs::metadata(&settings).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let url = wharf.cli(&["url"]);
    assert!(url.status.success());
    assert!(
        String::from_utf8_lossy(&url.stdout).contains(&format!("/api/webhook/{}", wharf.secret()))
    );
    drop(wharf);

    let temp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(temp.path().join("state")).unwrap();
    std::fs::write(
        temp.path().join("state/settings.toml"),
        "webhook_secret = \n",
    )
    .unwrap();
    std::fs::write(temp.path().join("wharf.toml"), "listen = \"127.0.0.1:0\"\n").unwrap();
    let output = std::process::Command::new(support::BIN)
        .arg("--config")
        .arg(temp.path().join("wharf.toml"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("settings.toml:1"), "{stderr}");
    assert_eq!(
        read(&temp.path().join("state/settings.toml")),
        "webhook_secret = \n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_reports_file_line_and_reason() {
    let root = env!("CARGO_MANIFEST_DIR");
    let example = std::process::Command::new(support::BIN)
        .args(["check", "--config", &format!("{root}/config.example.toml")])
        .output()
        .unwrap();
    assert!(
        example.status.success(),
        "{}",
        String::from_utf8_lossy(&example.stdout)
    );

    let temp = tempfile::tempdir().unwrap();
    let projects = temp.path().join("projects");
    std::fs::create_dir_all(&projects).unwrap();
    std::fs::write(temp.path().join("wharf.toml"), "").unwrap();
    std::fs::write(
        projects.join("good.toml"),
        script_project("acme/good", "true", "[stages.a]\ntags = [\"*\"]"),
    )
    .unwrap();
    std::fs::write(projects.join("bad.toml"), "image = \"acme/bad\"\ndeployer = \"script\"\n[script]\ncommand = \"deploy.sh\"\n[stages.a]\ntags = [\"*\"]\n").unwrap();
    let output = std::process::Command::new(support::BIN)
        .args(["check", "--config"])
        .arg(temp.path().join("wharf.toml"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("bad.toml:3:"), "{stdout}");
    assert!(
        stdout.contains("1 project(s) loaded, 1 with errors"),
        "{stdout}"
    );
}
