//! Real senders' captured payloads through the real binary: the whole
//! request sequence of one `docker push` (distribution 2.8.2) deploys exactly
//! once, redeliveries are dropped, other senders match their projects, and
//! signatures are enforced.

// A panic in a test is a failed test: the no-panic lints are for the daemon.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::string_slice
)]

mod support;

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use support::{script_project, Wharf};

/// Request headers a sender adds, as (name, value).
type Headers<'a> = &'a [(&'a str, &'a str)];

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}/{name}")).unwrap()
}

async fn with_projects(extra: &str, projects: &[(&str, &str)]) -> Wharf {
    let wharf = Wharf::start(extra).await;
    for (name, image) in projects {
        wharf.write_project(
            name,
            &script_project(
                image,
                "true",
                "[stages.s]\ntags = [\"*\"]\nauto_deploy = false\n",
            ),
        );
    }
    // Wait until all are loaded.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, body) = wharf.admin_get("/api/admin/projects").await;
        if body["projects"].as_array().unwrap().len() == projects.len() {
            return wharf;
        }
        assert!(std::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_docker_push_deploys_exactly_once_and_redeliveries_are_dropped() {
    let wharf = with_projects("", &[("web", "localhost:5000/acme/web")]).await;
    let path = format!("/api/webhook/{}", wharf.secret());
    let mut recorded = Vec::new();
    let mut manifest_request = None;
    for line in fixture("distribution-2.8.2-docker-push.jsonl").lines() {
        let request: Value = serde_json::from_str(line).unwrap();
        let headers: Vec<(String, String)> = request["headers"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(name, _)| {
                !matches!(name.as_str(), "Host" | "Content-Length" | "Accept-Encoding")
            })
            .map(|(n, v)| (n.clone(), v.as_str().unwrap().to_string()))
            .collect();
        let pairs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let body = request["body"].as_str().unwrap();
        let (status, answer) = wharf.post_raw(&path, body, &pairs).await;
        assert!(status == 200 || status == 202, "{status}: {answer}");
        let deployments = answer["deployments"].as_array().unwrap();
        if deployments.is_empty() {
            assert_eq!(status, 200);
            assert!(
                !answer["ignored"].as_array().unwrap().is_empty(),
                "{answer}"
            );
        } else {
            assert_eq!(status, 202);
            manifest_request = Some((
                pairs
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect::<Vec<_>>(),
                body.to_string(),
            ));
        }
        recorded.extend(deployments.iter().cloned());
    }
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0]["project"], "web");
    assert_eq!(recorded[0]["tag"], "1.2.3");
    let stored = wharf.deployment(recorded[0]["id"].as_str().unwrap()).await;
    assert_eq!(stored["repository"], "localhost:5000/acme/web");
    assert!(stored["digest"].as_str().unwrap().starts_with("sha256:"));

    // The registry redelivers the same event (it retries until it sees 2xx).
    let (headers, body) = manifest_request.unwrap();
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let (status, answer) = wharf.post_raw(&path, &body, &pairs).await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer["ignored"][0]
            .as_str()
            .unwrap()
            .contains("already received"),
        "{answer}"
    );
    let (_, all) = wharf.admin_get("/api/admin/deployments").await;
    assert_eq!(all["deployments"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_sender_matches_its_project() {
    let wharf = with_projects(
        "",
        &[
            ("hub", "svendowideit/testhook"),
            ("gh", "ghcr.io/codertocat/hello-world"),
            ("harbor", "hub.harbor.com/test-webhook/debian"),
            ("quay", "quay.io/dgangaia/test"),
            ("gitea", "localhost:3000/user1/giteacontainer"),
        ],
    )
    .await;
    let cases: [(&str, Headers, &str); 5] = [
        ("dockerhub-push.json", &[], "hub"),
        (
            "github-registry-package-published.json",
            &[("X-GitHub-Event", "registry_package")],
            "gh",
        ),
        ("harbor-push-artifact.json", &[], "harbor"),
        ("quay-repo-push.json", &[], "quay"),
        (
            "gitea-package-created.json",
            &[("X-Gitea-Event", "package")],
            "gitea",
        ),
    ];
    let path = format!("/api/webhook/{}", wharf.secret());
    for (file, headers, project) in cases {
        let (status, answer) = wharf.post_raw(&path, &fixture(file), headers).await;
        assert_eq!(status, 202, "{file}: {answer}");
        let projects: Vec<_> = answer["deployments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["project"].as_str().unwrap().to_string())
            .collect();
        assert!(
            !projects.is_empty() && projects.iter().all(|p| p == project),
            "{file}: {answer}"
        );
    }
}

fn sign(secret: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[tokio::test(flavor = "multi_thread")]
async fn signatures_are_verified_when_configured() {
    let key = "It's a Secret to Everybody";
    let wharf = with_projects(
        &format!("[webhook]\nhmac_secret = \"{key}\"\nrequire_signature = true\n"),
        &[("gh", "ghcr.io/codertocat/hello-world")],
    )
    .await;
    let path = format!("/api/webhook/{}", wharf.secret());
    let body = fixture("github-registry-package-published.json");
    let good = format!("sha256={}", sign(key, &body));
    let event = ("X-GitHub-Event", "registry_package");

    let (status, answer) = wharf
        .post_raw(&path, &body, &[event, ("X-Hub-Signature-256", &good)])
        .await;
    assert_eq!(status, 202, "{answer}");
    let (status, _) = wharf
        .post_raw(
            &path,
            &body,
            &[event, ("X-Gitea-Signature", &sign(key, &body))],
        )
        .await;
    assert_eq!(status, 202);

    let bad = format!("sha256={}", sign("another key", &body));
    let (status, answer) = wharf
        .post_raw(&path, &body, &[event, ("X-Hub-Signature-256", &bad)])
        .await;
    assert_eq!(status, 401, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("signature"),
        "{answer}"
    );
    let tampered = body.replace("v1.4.0", "v6.6.6");
    let (status, _) = wharf
        .post_raw(&path, &tampered, &[event, ("X-Hub-Signature-256", &good)])
        .await;
    assert_eq!(status, 401);
    let (status, answer) = wharf.post_raw(&path, &body, &[event]).await;
    assert_eq!(status, 401, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("required"),
        "{answer}"
    );
    wharf.assert_no_secrets_logged(&[key, &wharf.secret(), &wharf.token()]);
}
