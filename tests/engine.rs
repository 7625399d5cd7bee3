//! The deployment engine end to end, with the real binary and real
//! processes: per-stage ordering and superseding, crash recovery, approvals,
//! graceful shutdown, notifications, the admin API and CLI, metrics.

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
use support::{read, receiver, script_project, Wharf};

const WAIT: Duration = Duration::from_secs(30);

/// A stage whose script records start and end in `trace`, sleeping between.
fn traced_project(wharf: &Wharf, seconds: f32, stages: &str) -> std::path::PathBuf {
    let trace = wharf.dir.join("trace.out");
    wharf.write_project(
        "web",
        &script_project(
            "acme/web",
            &format!(
                "echo start $WHARF_TAG >> {t}; sleep {seconds}; echo end $WHARF_TAG >> {t}",
                t = trace.display()
            ),
            stages,
        ),
    );
    trace
}

async fn push_tag(wharf: &Wharf, tag: &str) -> Value {
    let (status, body) = wharf
        .push(&json!({ "image": format!("acme/web:{tag}") }).to_string())
        .await;
    assert!(status == 202 || status == 200, "{status}: {body}");
    body
}

fn ids(body: &Value) -> Vec<String> {
    body["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect()
}

async fn start_with_project(
    extra: &str,
    seconds: f32,
    stages: &str,
) -> (Wharf, std::path::PathBuf) {
    let temp_wharf = Wharf::start(extra).await;
    let trace = traced_project(&temp_wharf, seconds, stages);
    // Written after start: wait for the reload to pick it up.
    temp_wharf.wait_loaded("web").await;
    (temp_wharf, trace)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_runs_the_first_and_the_last_in_order() {
    let (wharf, trace) = start_with_project("", 2.0, "[stages.s]\ntags = [\"*\"]\n").await;
    let started = Instant::now();
    let mut all = Vec::new();
    for tag in ["t1", "t2", "t3", "t4", "t5"] {
        all.extend(ids(&push_tag(&wharf, tag).await));
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert!(started.elapsed() < Duration::from_millis(1000));
    assert_eq!(all.len(), 5);
    let last = wharf.wait_for(&all[4], "succeeded", WAIT).await;
    assert_eq!(wharf.deployment(&all[0]).await["status"], "succeeded");
    for id in &all[1..4] {
        let middle = wharf.deployment(id).await;
        assert_eq!(middle["status"], "superseded", "{middle}");
        assert!(middle["reason"].as_str().unwrap().contains(&all[4]));
    }
    assert_eq!(read(&trace), "start t1\nend t1\nstart t5\nend t5\n");
    assert_eq!(last["tag"], "t5");
}

#[tokio::test(flavor = "multi_thread")]
async fn stages_and_projects_run_concurrently_within_the_global_bound() {
    let wharf = Wharf::start("[deploy]\nmax_concurrent = 2\n").await;
    let trace = wharf.dir.join("trace.out");
    let snippet = format!(
        "echo start $WHARF_STAGE >> {t}; sleep 1; echo end $WHARF_STAGE >> {t}",
        t = trace.display()
    );
    wharf.write_project(
        "web",
        &script_project(
            "acme/web",
            &snippet,
            "[stages.a]\ntags = [\"*\"]\n[stages.b]\ntags = [\"*\"]\n[stages.c]\ntags = [\"*\"]\n",
        ),
    );
    wharf.wait_loaded("web").await;
    let body = push_tag(&wharf, "v1").await;
    let all = ids(&body);
    assert_eq!(all.len(), 3);
    for id in &all {
        wharf.wait_for(id, "succeeded", WAIT).await;
    }
    let lines: Vec<String> = read(&trace).lines().map(str::to_string).collect();
    // Two start together; the third starts only after one ended.
    assert!(
        lines[0].starts_with("start") && lines[1].starts_with("start"),
        "{lines:?}"
    );
    assert!(lines[2].starts_with("end"), "{lines:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_nine_mid_deploy_is_never_lost_nor_stuck() {
    let (mut wharf, trace) = start_with_project("", 30.0, "[stages.s]\ntags = [\"*\"]\n").await;
    let running = ids(&push_tag(&wharf, "v1").await).remove(0);
    wharf.wait_for(&running, "running", WAIT).await;
    assert!(support::eventually(WAIT, || read(&trace).contains("start v1")).await);
    // One more waits behind it.
    let queued = ids(&push_tag(&wharf, "v2").await).remove(0);
    wharf.kill9();

    // Make the next run quick, then restart.
    traced_project(&wharf, 0.1, "[stages.s]\ntags = [\"*\"]\n");
    wharf.launch().await;
    let interrupted = wharf.wait_for(&running, "interrupted", WAIT).await;
    let reason = interrupted["reason"].as_str().unwrap();
    assert!(
        reason.contains("wharf stopped while this deployment ran"),
        "{reason}"
    );
    assert!(reason.contains("wharf deploy web s v1"), "{reason}");
    wharf.wait_for(&queued, "succeeded", WAIT).await;
    assert!(
        read(&trace).ends_with("start v2\nend v2\n"),
        "{}",
        read(&trace)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn approvals_gate_a_stage() {
    let (wharf, trace) = start_with_project(
        "",
        0.1,
        "[stages.prod]\ntags = [\"v*\"]\nauto_deploy = false\n",
    )
    .await;
    let first = push_tag(&wharf, "v1").await;
    assert_eq!(first["deployments"][0]["status"], "awaiting_approval");
    let v1 = ids(&first).remove(0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(read(&trace), "", "nothing may run before approval");

    // A newer push supersedes the pending one.
    let v2 = ids(&push_tag(&wharf, "v2").await).remove(0);
    assert_eq!(wharf.deployment(&v1).await["status"], "superseded");
    let (status, body) = wharf
        .admin_post(&format!("/api/admin/deployments/{v1}/approve"), json!(null))
        .await;
    assert_eq!(status, 409, "{body}");

    // Approve through the CLI.
    let output = wharf.cli(&["approve", &v2]);
    assert!(output.status.success(), "{output:?}");
    wharf.wait_for(&v2, "succeeded", WAIT).await;
    assert_eq!(read(&trace), "start v2\nend v2\n");

    // Reject.
    let v3 = ids(&push_tag(&wharf, "v3").await).remove(0);
    let output = wharf.cli(&["reject", &v3]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(wharf.deployment(&v3).await["status"], "rejected");
    let (status, _) = wharf
        .admin_post("/api/admin/deployments/no-such-id/approve", json!(null))
        .await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_the_running_deployment_finish_and_keeps_the_queue() {
    let (mut wharf, trace) = start_with_project("", 1.5, "[stages.s]\ntags = [\"*\"]\n").await;
    let running = ids(&push_tag(&wharf, "v1").await).remove(0);
    wharf.wait_for(&running, "running", WAIT).await;
    let queued = ids(&push_tag(&wharf, "v2").await).remove(0);
    let status = wharf.terminate().await;
    assert!(status.success(), "{status:?}");
    assert_eq!(read(&trace), "start v1\nend v1\n");

    wharf.launch().await;
    assert_eq!(wharf.deployment(&running).await["status"], "succeeded");
    wharf.wait_for(&queued, "succeeded", WAIT).await;
    assert_eq!(read(&trace), "start v1\nend v1\nstart v2\nend v2\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn notifications_arrive_once_per_ended_deployment_and_never_block() {
    let (ok_url, ok) = receiver("ok").await;
    let (hang_url, hung) = receiver("hang").await;
    let (fail_url, failed) = receiver("fail").await;
    let extra = format!(
        "[[notify]]\nurl = \"{ok_url}\"\nformat = \"json\"\n\
         [[notify]]\nurl = \"{hang_url}\"\nformat = \"slack\"\n\
         [[notify]]\nurl = \"{fail_url}\"\nevents = [\"failed\"]\n"
    );
    let (wharf, _trace) = start_with_project(&extra, 0.05, "[stages.s]\ntags = [\"*\"]\n").await;
    let started = Instant::now();
    let first = ids(&push_tag(&wharf, "v1").await).remove(0);
    wharf.wait_for(&first, "succeeded", WAIT).await;
    let second = ids(&push_tag(&wharf, "v2").await).remove(0);
    wharf.wait_for(&second, "succeeded", WAIT).await;
    // The hanging receiver holds a connection for an hour; deployments went on.
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert!(support::eventually(WAIT, || ok.lock().unwrap().len() == 2).await);
    let messages = ok.lock().unwrap().clone();
    assert_eq!(messages[0]["event"], "deployment.finished");
    assert_eq!(messages[0]["deployment"]["id"], first.as_str());
    assert_eq!(messages[0]["deployment"]["status"], "succeeded");
    assert_eq!(messages[1]["deployment"]["id"], second.as_str());
    assert!(support::eventually(WAIT, || hung.lock().unwrap().len() == 2).await);
    assert!(hung.lock().unwrap()[0]["text"]
        .as_str()
        .unwrap()
        .contains("web/s"));
    // Filtered: only failures go to the third receiver.
    assert!(failed.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_api_lists_deploys_rolls_back_and_counts() {
    let (wharf, trace) = start_with_project("", 0.05, "[stages.s]\ntags = [\"*\"]\n").await;
    for tag in ["v1", "v2", "v3"] {
        let id = ids(&push_tag(&wharf, tag).await).remove(0);
        wharf.wait_for(&id, "succeeded", WAIT).await;
    }
    let client = reqwest::Client::new();
    for path in ["/api/admin/projects", "/api/admin/deployments", "/metrics"] {
        let response = client
            .get(format!("{}{path}", wharf.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 401, "{path}");
    }

    let (status, page) = wharf
        .admin_get("/api/admin/deployments?project=web&limit=2")
        .await;
    assert_eq!(status, 200);
    let tags: Vec<_> = page["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["tag"].clone())
        .collect();
    assert_eq!(tags, [json!("v3"), json!("v2")]);
    let next = page["next_before"].as_str().unwrap();
    let (_, rest) = wharf
        .admin_get(&format!("/api/admin/deployments?limit=2&before={next}"))
        .await;
    assert_eq!(rest["deployments"][0]["tag"], "v1");
    let (status, body) = wharf.admin_get("/api/admin/deployments?status=bogus").await;
    assert_eq!(status, 400, "{body}");

    // Rollback: the previous succeeded tag, v2.
    let output = wharf.cli(&["rollback", "web", "s"]);
    assert!(output.status.success(), "{output:?}");
    let line = String::from_utf8_lossy(&output.stdout).to_string();
    let id = line.split_whitespace().next().unwrap().to_string();
    let rolled = wharf.wait_for(&id, "succeeded", WAIT).await;
    assert_eq!(rolled["tag"], "v2");
    assert_eq!(rolled["trigger"], "rollback");

    // Manual deploy through the CLI, and the errors for unknown names.
    let output = wharf.cli(&["deploy", "web", "s", "v9"]);
    assert!(output.status.success(), "{output:?}");
    let (status, body) = wharf
        .admin_post(
            "/api/admin/deploy",
            json!({"project": "nope", "stage": "s", "tag": "v1"}),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, _) = wharf
        .admin_post(
            "/api/admin/deploy",
            json!({"project": "web", "stage": "s", "tag": "bad tag"}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(support::eventually(WAIT, || read(&trace).ends_with("end v9\n")).await);

    let status_out = wharf.cli(&["status"]);
    let text = String::from_utf8_lossy(&status_out.stdout);
    assert!(text.contains("web  docker.io/acme/web"), "{text}");
    assert!(text.contains("last: v9 succeeded"), "{text}");
    let logs = wharf.cli(&["logs", &id]);
    assert!(
        String::from_utf8_lossy(&logs.stdout).contains("[stdout]")
            || String::from_utf8_lossy(&logs.stdout).contains("[wharf]")
    );

    let (status, metrics) = wharf.admin_get("/metrics").await;
    assert_eq!(status, 200);
    let text = metrics.as_str().unwrap();
    assert!(
        text.contains("wharf_webhooks_total{result=\"accepted\"} 3"),
        "{text}"
    );
    assert!(
        text.contains(
            "wharf_deployments_finished_total{status=\"succeeded\",deployer=\"script\"} 5"
        ),
        "{text}"
    );
    assert!(
        text.contains("wharf_deployments{status=\"queued\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("wharf_deployment_duration_seconds_count{deployer=\"script\"} 5"),
        "{text}"
    );
}
