//! The admin API answers exactly what it was asked, with the real binary on
//! a real port: a query it cannot apply is refused rather than dropped, and
//! an unknown project or stage is a 404 wherever one is named.

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
use support::{script_project, Wharf};

const WAIT: Duration = Duration::from_secs(20);

/// A wharf with project `web` (stages `staging` and `prod`) and one
/// succeeded deployment in each; the ids, oldest first.
async fn with_two_deployments() -> (Wharf, Vec<String>) {
    let wharf = Wharf::start("").await;
    wharf.write_project(
        "web",
        &script_project(
            "localhost:5000/acme/web",
            "true",
            "[stages.staging]\ntags = [\"main-*\"]\n[stages.prod]\ntags = [\"v*\"]\n",
        ),
    );
    let mut ids = Vec::new();
    for image in [
        "localhost:5000/acme/web:main-1",
        "localhost:5000/acme/web:v1",
    ] {
        let body = wharf
            .push_until_accepted(&json!({ "image": image }).to_string())
            .await;
        let id = body["deployments"][0]["id"].as_str().unwrap().to_string();
        wharf.wait_for(&id, "succeeded", WAIT).await;
        ids.push(id);
    }
    (wharf, ids)
}

#[tokio::test(flavor = "multi_thread")]
async fn deployment_filters_are_applied_or_refused_never_dropped() {
    let (wharf, ids) = with_two_deployments().await;
    let list = |query: &'static str| {
        let wharf = &wharf;
        async move {
            wharf
                .admin_get(&format!("/api/admin/deployments?{query}"))
                .await
        }
    };

    // What a filter that cannot be applied must never do: answer as if it
    // had not been given (every deployment, status 200).
    for (query, needle) in [
        ("project=web&project=other", "project"),
        ("stage=staging&stage=prod", "stage"),
        ("status=succeeded&status=failed", "status"),
        ("limit=abc", "limit"),
        ("limit=-1", "limit"),
        ("limit=1.5", "limit"),
        ("limit=99999999999", "limit"),
        ("limit=1&limit=2", "limit"),
        ("before=no-such-deployment", "before"),
        ("status=bogus", "status"),
    ] {
        let (status, body) = list(query).await;
        assert_eq!(status, 400, "{query}: {body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains(needle), "{query}: {body}");
    }

    // What they do when they can be applied.
    let (status, body) = list("").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["deployments"].as_array().unwrap().len(), 2, "{body}");
    let (_, body) = list("project=&stage=&status=&before=").await;
    assert_eq!(body["deployments"].as_array().unwrap().len(), 2, "{body}");
    let (_, body) = list("stage=prod").await;
    assert_eq!(body["deployments"][0]["id"], ids[1].as_str(), "{body}");
    assert_eq!(body["deployments"].as_array().unwrap().len(), 1, "{body}");
    // 0 reads as 1: a page is never empty by request.
    let (_, body) = list("limit=0").await;
    assert_eq!(body["deployments"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body["next_before"], ids[1].as_str(), "{body}");
    let (status, body) = wharf
        .admin_get(&format!("/api/admin/deployments?limit=1&before={}", ids[1]))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["deployments"][0]["id"], ids[0].as_str(), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn rollback_names_an_unknown_project_or_stage_like_deploy_does() {
    let (wharf, _) = with_two_deployments().await;
    for (target, needle) in [
        (
            json!({"project": "nope", "stage": "staging"}),
            "no project 'nope'",
        ),
        (
            json!({"project": "web", "stage": "nope"}),
            "no stage 'nope'",
        ),
    ] {
        let (status, body) = wharf
            .admin_post("/api/admin/deploy", {
                let mut b = target.clone();
                b["tag"] = json!("main-2");
                b
            })
            .await;
        assert_eq!(status, 404, "deploy {target}: {body}");
        let (status, body) = wharf
            .admin_post("/api/admin/rollback", target.clone())
            .await;
        assert_eq!(status, 404, "rollback {target}: {body}");
        assert!(
            body["error"].as_str().unwrap_or_default().contains(needle),
            "rollback {target}: {body}"
        );
    }
    // A known stage with nothing to go back to is still a conflict.
    let (status, body) = wharf
        .admin_post(
            "/api/admin/rollback",
            json!({"project": "web", "stage": "prod"}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
}
