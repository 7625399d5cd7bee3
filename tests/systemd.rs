//! wharf as a systemd service: the readiness protocol over a fake
//! `NOTIFY_SOCKET`, log formats for pipes and the journal (and no secret in
//! them at any level), the unit file, the packaged config, and `wharf check`
//! on the Docker engine. The .deb itself is built and installed by
//! `tests/deb.sh` (run by `.ci/run`).

// A panic in a test is a failed test: the no-panic lints are for the daemon.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::string_slice
)]

mod support;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use support::{script_project, signal, Wharf, BIN};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The socket systemd would listen on, in a temp folder of the test's.
struct FakeSystemd {
    socket: UnixDatagram,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl FakeSystemd {
    fn new() -> FakeSystemd {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        FakeSystemd {
            socket,
            path,
            _dir: dir,
        }
    }

    /// Datagrams (one per `sd_notify` call: `KEY=value` lines) up to and
    /// including the first one for which `until` holds.
    async fn until(&self, what: &str, until: impl Fn(&str) -> bool) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        loop {
            assert!(
                Instant::now() < deadline,
                "no {what} within 30 s; got {seen:?}"
            );
            // A blocking receive with a short timeout, off the async runtime.
            let socket = self.socket.try_clone().unwrap();
            let message = tokio::task::spawn_blocking(move || {
                socket
                    .set_read_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                let mut buffer = [0u8; 4096];
                let n = socket.recv(&mut buffer).ok()?;
                Some(String::from_utf8_lossy(&buffer[..n]).into_owned())
            })
            .await
            .unwrap();
            if let Some(message) = message {
                let done = until(&message);
                seen.push(message);
                if done {
                    return seen;
                }
            }
        }
    }
}

fn has_line(message: &str, line: &str) -> bool {
    message.lines().any(|l| l == line)
}

fn status_of(message: &str) -> Option<&str> {
    message.lines().find_map(|l| l.strip_prefix("STATUS="))
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_protocol_over_a_fake_notify_socket() {
    let systemd = FakeSystemd::new();
    let socket = systemd.path.to_str().unwrap().to_string();
    let mut wharf = Wharf::start_with_env("", &[("NOTIFY_SOCKET", &socket)]).await;

    // READY=1 with a summary, once the port answers.
    let ready = systemd.until("READY=1", |m| has_line(m, "READY=1")).await;
    let ready = ready.last().unwrap();
    let port = wharf.base.rsplit(':').next().unwrap();
    assert_eq!(
        status_of(ready),
        Some(format!("listening on 127.0.0.1:{port}; 0 projects").as_str()),
        "{ready:?}"
    );
    let health = reqwest::get(format!("{}/healthz", wharf.base))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    // An edited project file: the summary follows (no READY, no RELOADING).
    wharf.write_project(
        "web",
        &script_project("acme/web", "true", "[stages.s]\ntags = [\"*\"]\n"),
    );
    let edited = systemd
        .until("STATUS after an edit", |m| {
            status_of(m).is_some_and(|s| s.ends_with("; 1 project"))
        })
        .await;
    for message in &edited {
        assert!(!has_line(message, "READY=1"), "{edited:?}");
        assert!(!has_line(message, "RELOADING=1"), "{edited:?}");
    }

    // SIGHUP: RELOADING=1 (with MONOTONIC_USEC) first, then READY=1.
    signal(wharf.pid(), "HUP");
    let reload = systemd
        .until("READY=1 after SIGHUP", |m| has_line(m, "READY=1"))
        .await;
    let first = &reload[0];
    assert!(has_line(first, "RELOADING=1"), "{reload:?}");
    let usec = first
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {first:?}"));
    assert!(usec.parse::<u64>().unwrap() > 0);
    assert_eq!(
        status_of(reload.last().unwrap()),
        Some(format!("listening on 127.0.0.1:{port}; 1 project").as_str())
    );

    // SIGTERM: STOPPING=1, and a clean exit.
    let exit = wharf.terminate().await;
    assert!(exit.success(), "{exit:?}\n{}", wharf.output());
    let stopping = systemd
        .until("STOPPING=1", |m| has_line(m, "STOPPING=1"))
        .await;
    assert!(
        stopping.iter().all(|m| !has_line(m, "READY=1")),
        "{stopping:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_logs_hold_no_secret_even_at_trace_level() {
    let mut wharf = Wharf::start_with_env("", &[("RUST_LOG", "trace")]).await;
    let (secret, token) = wharf.settings();
    wharf.write_project(
        "web",
        &script_project(
            "acme/web",
            "echo deploying $WHARF_IMAGE",
            "[stages.s]\ntags = [\"*\"]\n",
        ),
    );
    // A push, and its deployment to the end.
    let accepted = wharf
        .push_until_accepted(&json!({"image": "acme/web:v1"}).to_string())
        .await;
    let id = accepted["deployments"][0]["id"].as_str().unwrap();
    wharf
        .wait_for(id, "succeeded", Duration::from_secs(30))
        .await;
    // An admin call, and a refused one.
    let (status, _) = wharf.admin_get("/api/admin/projects").await;
    assert_eq!(status, 200);
    let refused = reqwest::Client::new()
        .get(format!("{}/api/admin/projects", wharf.base))
        .bearer_auth(format!("{token}x"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    // A wrong secret, a rotation through the API and through the CLI.
    assert_eq!(
        wharf.status_with_secret(&format!("{secret}0"), "{}").await,
        404
    );
    let (status, rotated) = wharf.admin_post("/api/admin/rotate", json!({})).await;
    assert_eq!(status, 200, "{rotated}");
    let by_api = rotated["webhook_secret"].as_str().unwrap().to_string();
    let cli = wharf.cli(&["rotate"]);
    assert!(cli.status.success(), "{cli:?}");
    let by_cli = wharf.secret();
    assert_ne!(by_cli, by_api);
    wharf
        .push_until_accepted(&json!({"image": "acme/web:v2"}).to_string())
        .await;
    // A full reload.
    signal(wharf.pid(), "HUP");
    let reloaded = support::eventually(Duration::from_secs(10), || {
        wharf.output().contains("reloading everything")
    })
    .await;
    assert!(reloaded, "{}", wharf.output());
    assert!(wharf.terminate().await.success());

    let output = wharf.output();
    // It really was verbose, and it really was the plain format.
    assert!(output.lines().any(|l| l.starts_with("DEBUG ")), "{output}");
    assert!(
        output.contains("path=\"/api/webhook/<secret>\""),
        "{output}"
    );
    for line in output.lines() {
        assert!(!line.contains('\u{1b}'), "colour on a pipe: {line:?}");
        let level = line.split_whitespace().next().unwrap_or_default();
        assert!(
            ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&level),
            "not a plain log line (timestamp?): {line:?}"
        );
    }
    wharf.assert_no_secrets_logged(&[&secret, &by_api, &by_cli, &token]);
}

#[tokio::test(flavor = "multi_thread")]
async fn lines_carry_a_syslog_priority_when_stderr_is_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("wharf.toml"),
        "listen = \"127.0.0.1:0\"\n[auto_create]\nenabled = false\n",
    )
    .unwrap();
    // systemd names the journal stream by device and inode; a file stands
    // in for the socket.
    let log_path = dir.path().join("journal");
    let log = std::fs::File::create(&log_path).unwrap();
    let meta = log.metadata().unwrap();
    let stream = {
        use std::os::unix::fs::MetadataExt;
        format!("{}:{}", meta.dev(), meta.ino())
    };
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(dir.path().join("wharf.toml"))
        .env("RUST_LOG", "info")
        .env("JOURNAL_STREAM", stream)
        .env_remove("WHARF_CONFIG")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let listening = support::eventually(Duration::from_secs(30), || {
        support::read(&log_path).contains("wharf is listening")
    })
    .await;
    // SIGTERM at once, right after liftoff: still a clean, graceful exit.
    signal(child.id(), "TERM");
    let status = child.wait().unwrap();
    let text = support::read(&log_path);
    assert!(listening && status.success(), "{status:?}\n{text}");
    for line in text.lines() {
        assert!(
            line.starts_with("<6>") || line.starts_with("<4>") || line.starts_with("<3>"),
            "no priority prefix: {line:?}"
        );
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("<6>") && l.contains("wharf is listening")),
        "{text}"
    );
}

/// `key=value` pairs of a unit file, in order; repeated keys repeat.
fn unit_entries(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

#[test]
fn the_unit_runs_wharf_hardened_and_notifies() {
    let unit_path = Path::new(ROOT).join("systemd/wharf.service");
    let text = std::fs::read_to_string(&unit_path).unwrap();
    assert!(
        text.contains("systemctl edit wharf"),
        "header: use systemctl edit"
    );
    assert!(text.contains("docker group"), "header: the docker group");
    let entries = unit_entries(&text);
    let value = |key: &str| -> Vec<&str> {
        entries
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    for (key, expected) in [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        (
            "ExecStart",
            "/usr/bin/wharf serve --config /etc/wharf/wharf.toml",
        ),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("Restart", "on-failure"),
        ("ConfigurationDirectory", "wharf"),
        ("StateDirectory", "wharf"),
        ("User", "wharf"),
        ("SupplementaryGroups", "docker"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ReadWritePaths", "/var/lib/wharf -/etc/wharf/projects"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
        ("RestrictNamespaces", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("SystemCallArchitectures", "native"),
    ] {
        assert_eq!(value(key), [expected], "{key}");
    }
    assert_eq!(value("SystemCallFilter")[0], "@system-service");
    assert!(!value("StartLimitIntervalSec").is_empty());
    assert!(!value("StartLimitBurst").is_empty());

    // systemd's own opinion, where systemd-analyze is installed (.ci/run
    // installs it). ExecStart must name an existing binary: use this build.
    systemd_analyze_verifies("wharf.service", &text, "wharf.service");
}

/// The route proxy's unit: the same sandbox as wharf's, minus what the
/// proxy does not need (the docker group, the projects folder), and shipped
/// in the package as a plain asset (never restarted by an upgrade).
#[test]
fn the_proxy_unit_is_hardened_like_wharfs_and_shipped() {
    let read =
        |name: &str| std::fs::read_to_string(Path::new(ROOT).join("systemd").join(name)).unwrap();
    let (wharf, proxy) = (read("wharf.service"), read("wharf-proxy.service"));
    assert!(
        proxy.contains("systemctl edit wharf-proxy"),
        "header: use systemctl edit"
    );
    assert!(
        proxy.contains("manage = false"),
        "header: the [proxy] setting"
    );
    let proxy_entries = unit_entries(&proxy);
    let value = |key: &str| -> Vec<&str> {
        proxy_entries
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    for (key, expected) in [
        ("Type", "notify"),
        (
            "ExecStart",
            "/usr/bin/wharf proxy --config /etc/wharf/wharf.toml",
        ),
        ("User", "wharf"),
        ("StateDirectory", "wharf"),
        ("ReadWritePaths", "/var/lib/wharf"),
        ("CapabilityBoundingSet", ""),
    ] {
        assert_eq!(value(key), [expected], "{key}");
    }
    assert!(
        value("SupplementaryGroups").is_empty(),
        "the proxy needs no docker group"
    );
    let sandbox = [
        "NoNewPrivileges",
        "ProtectSystem",
        "ProtectHome",
        "PrivateTmp",
        "PrivateMounts",
        "PrivateDevices",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectKernelLogs",
        "ProtectControlGroups",
        "ProtectClock",
        "ProtectHostname",
        "ProtectProc",
        "RestrictAddressFamilies",
        "RestrictNamespaces",
        "RestrictRealtime",
        "RestrictSUIDSGID",
        "RemoveIPC",
        "LockPersonality",
        "MemoryDenyWriteExecute",
        "SystemCallArchitectures",
        "SystemCallFilter",
        "SystemCallErrorNumber",
        "AmbientCapabilities",
        "Restart",
    ];
    let wharf_entries = unit_entries(&wharf);
    for key in sandbox {
        let of = |entries: &[(String, String)]| -> Vec<String> {
            entries
                .iter()
                .filter(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .collect()
        };
        assert_eq!(
            of(&proxy_entries),
            of(&wharf_entries),
            "{key} differs from wharf.service"
        );
    }
    assert!(
        wharf.contains("Wants=wharf-proxy.service"),
        "starting wharf starts the proxy"
    );
    let manifest = std::fs::read_to_string(Path::new(ROOT).join("Cargo.toml")).unwrap();
    assert!(manifest
        .contains("[\"systemd/wharf-proxy.service\", \"usr/lib/systemd/system/\", \"644\"]"));

    systemd_analyze_verifies("wharf-proxy.service", &proxy, "wharf-proxy.service:");
}

#[test]
fn the_packaged_config_is_the_example_with_state_in_var_lib() {
    let example = std::fs::read_to_string(Path::new(ROOT).join("config.example.toml")).unwrap();
    let packaged_path = Path::new(ROOT).join("debian/wharf.toml");
    let packaged = std::fs::read_to_string(&packaged_path).unwrap();
    // A header of its own, then the example with state_dir replaced.
    let first = example.lines().next().unwrap();
    let body = &packaged[packaged
        .find(first)
        .expect("the example follows the header")..];
    assert_eq!(
        body.replace(
            "state_dir = \"/var/lib/wharf\"\n",
            "state_dir = \"state\"\n"
        )
        .replace("\nmanage = false\n", "\nmanage = true\n"),
        example,
        "debian/wharf.toml drifted from config.example.toml: regenerate it with \
         sed 's#^state_dir = \"state\"$#state_dir = \"/var/lib/wharf\"#; s#^manage = true$#manage = false#' below its header"
    );
    // Resolved the way the daemon resolves it from /etc/wharf/wharf.toml.
    let config = wharf::config::DaemonConfig::load(Some(&packaged_path)).unwrap();
    assert_eq!(config.state_dir, Path::new("/var/lib/wharf"));
    assert!(!config.proxy.manage, "systemd runs wharf-proxy.service");
    assert_eq!(config.projects_dir, Path::new(ROOT).join("debian/projects"));
    let unit = std::fs::read_to_string(Path::new(ROOT).join("systemd/wharf.service")).unwrap();
    assert!(unit.contains("StateDirectory=wharf"));
}

/// `wharf check` with `DOCKER_HOST` pointing at `host`; its stdout.
fn check_with_docker_host(host: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("projects")).unwrap();
    std::fs::write(dir.path().join("wharf.toml"), "state_dir = \"state\"\n").unwrap();
    let output = Command::new(BIN)
        .arg("--config")
        .arg(dir.path().join("wharf.toml"))
        .arg("check")
        .env("DOCKER_HOST", host)
        .env_remove("WHARF_CONFIG")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[test]
fn check_warns_when_the_docker_engine_does_not_answer() {
    // Default config: auto_create with the docker deployer needs the engine.
    let dir = tempfile::tempdir().unwrap();
    let gone = format!("unix://{}/docker.sock", dir.path().display());
    let (ok, out) = check_with_docker_host(&gone);
    assert!(ok, "a warning, not an error:\n{out}");
    assert!(
        out.contains(&format!(
            "warning: cannot reach the Docker engine at {gone}: "
        )),
        "{out}"
    );

    // A fake engine: every request gets the answer to `GET /version`,
    // which is how the docker plugin agrees on an API version.
    let path = dir.path().join("engine.sock");
    let listener = UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { break };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                line.clear();
            }
            let body = r#"{"Version":"27.0.0","ApiVersion":"1.41","MinAPIVersion":"1.12"}"#;
            let mut stream = stream;
            let _ = stream.write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nApi-Version: 1.41\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
        }
    });
    let up = format!("unix://{}", path.display());
    let (ok, out) = check_with_docker_host(&up);
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("ok: the Docker engine answers at {up} (API 1.41)")),
        "{out}"
    );
}

/// `systemd-analyze verify` on a copy of the unit `text` named `file`
/// (its ExecStart pointed at this build): it must pass and say nothing
/// containing `complaint`. Skipped, saying so, where systemd-analyze is
/// not installed (.ci/run installs it).
fn systemd_analyze_verifies(file: &str, text: &str, complaint: &str) {
    let Ok(probe) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze not installed: skipping `systemd-analyze verify`");
        return;
    };
    assert!(probe.status.success());
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join(file);
    std::fs::write(&copy, text.replace("/usr/bin/wharf", BIN)).unwrap();
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success() && !said.contains(complaint),
        "systemd-analyze verify: {verify:?}"
    );
}
