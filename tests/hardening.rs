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
