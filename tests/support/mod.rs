//! Runs the real `wharf` binary on a free loopback port with its own temp
//! folders, and talks to it over HTTP like a CI job or an operator would.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const BIN: &str = env!("CARGO_BIN_EXE_wharf");

/// A running wharf and everything it wrote.
pub struct Wharf {
    pub dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    child: Option<Child>,
    pub base: String,
    output: Arc<Mutex<Vec<String>>>,
    http: reqwest::Client,
    /// Extra environment for every launch (`start_with_env`).
    env: Vec<(String, String)>,
}

impl Wharf {
    /// A fresh folder with `wharf.toml` = listen on port 0 + `extra`.
    pub async fn start(extra: &str) -> Wharf {
        Wharf::start_with_env(extra, &[]).await
    }

    /// Like `start`, with extra environment variables for the daemon
    /// (they override the defaults, e.g. `RUST_LOG`).
    pub async fn start_with_env(extra: &str, env: &[(&str, &str)]) -> Wharf {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().to_path_buf();
        std::fs::create_dir_all(dir.join("projects")).unwrap();
        // Auto-creation pulls and runs unknown images on the engine: only
        // the tests about it (which configure `[auto_create]`) turn it on.
        let auto_create = if extra.contains("[auto_create]") {
            ""
        } else {
            "[auto_create]\nenabled = false\n"
        };
        std::fs::write(
            dir.join("wharf.toml"),
            format!("listen = \"127.0.0.1:0\"\nprojects_dir = \"projects\"\nstate_dir = \"state\"\n{extra}\n{auto_create}"),
        )
        .unwrap();
        let mut wharf = Wharf {
            dir,
            _temp: Some(temp),
            child: None,
            base: String::new(),
            output: Arc::new(Mutex::new(Vec::new())),
            http: reqwest::Client::new(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        wharf.launch().await;
        wharf
    }

    /// Start the binary on this folder (again, after a stop or a crash).
    pub async fn launch(&mut self) {
        let mut child = Command::new(BIN)
            .arg("--config")
            .arg(self.dir.join("wharf.toml"))
            .env("RUST_LOG", "info")
            .env_remove("WHARF_CONFIG")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start wharf");
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = self.output.clone();
            let port_tx = port_tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if let Some(rest) = line.split("address=127.0.0.1:").nth(1) {
                        let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
                        let _ = port_tx.send(port);
                    }
                    output.lock().unwrap().push(line);
                }
            });
        }
        self.child = Some(child);
        let port =
            tokio::task::spawn_blocking(move || port_rx.recv_timeout(Duration::from_secs(30)))
                .await
                .unwrap()
                .unwrap_or_else(|_| panic!("wharf did not start:\n{}", self.output()));
        self.base = format!("http://127.0.0.1:{port}");
    }

    pub fn output(&self) -> String {
        self.output.lock().unwrap().join("\n")
    }

    /// Set (or, with `None`, drop) a variable of the daemon's environment
    /// for the next `launch`.
    pub fn set_env(&mut self, key: &str, value: Option<&str>) {
        self.env.retain(|(k, _)| k != key);
        if let Some(value) = value {
            self.env.push((key.to_string(), value.to_string()));
        }
    }

    pub fn settings(&self) -> (String, String) {
        let text = std::fs::read_to_string(self.dir.join("state/settings.toml")).unwrap();
        let value: toml::Table = text.parse().unwrap();
        (
            value["webhook_secret"].as_str().unwrap().to_string(),
            value["admin_token"].as_str().unwrap().to_string(),
        )
    }

    pub fn secret(&self) -> String {
        self.settings().0
    }

    pub fn token(&self) -> String {
        self.settings().1
    }

    pub fn project_path(&self, name: &str) -> PathBuf {
        self.dir.join("projects").join(format!("{name}.toml"))
    }

    pub fn write_project(&self, name: &str, text: &str) {
        std::fs::write(self.project_path(name), text).unwrap();
    }

    /// POST a body to the webhook URL with the current secret.
    pub async fn push(&self, body: &str) -> (u16, Value) {
        let secret = self.secret();
        self.post_raw(&format!("/api/webhook/{secret}"), body, &[])
            .await
    }

    /// Push until the answer is 202 (a project written moments ago is picked
    /// up by the file watcher); the accepted body. Fails after 10 s.
    pub async fn push_until_accepted(&self, body: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (status, answer) = self.push(body).await;
            if status == 202 {
                return answer;
            }
            assert!(
                Instant::now() < deadline,
                "never accepted: {status} {answer}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Push until accepted (see `push_until_accepted`); the id of the one
    /// deployment the push recorded.
    pub async fn push_one(&self, body: &str) -> String {
        let accepted = self.push_until_accepted(body).await;
        let deployments = accepted["deployments"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(deployments.len(), 1, "one deployment expected: {accepted}");
        deployments[0]["id"].as_str().unwrap().to_string()
    }

    /// POST a body with a given secret; only the status.
    pub async fn status_with_secret(&self, secret: &str, body: &str) -> u16 {
        self.post_raw(&format!("/api/webhook/{secret}"), body, &[])
            .await
            .0
    }

    pub async fn post_raw(&self, path: &str, body: &str, headers: &[(&str, &str)]) -> (u16, Value) {
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .body(body.to_string());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn admin_get(&self, path: &str) -> (u16, Value) {
        self.admin(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    pub async fn admin_post(&self, path: &str, body: Value) -> (u16, Value) {
        self.admin(self.http.post(format!("{}{path}", self.base)).json(&body))
            .await
    }

    /// Send with the admin token; the status and the body (JSON, else text).
    async fn admin(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        let response = request.bearer_auth(self.token()).send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn deployment(&self, id: &str) -> Value {
        let (status, body) = self
            .admin_get(&format!("/api/admin/deployments/{id}"))
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Poll until the deployment reaches `status` (or fail after `limit`).
    pub async fn wait_for(&self, id: &str, status: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let deployment = self.deployment(id).await;
            if deployment["status"] == status {
                return deployment;
            }
            assert!(
                Instant::now() < deadline,
                "deployment {id} is {} after {limit:?}, expected {status}: {deployment:#}",
                deployment["status"]
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Wait until the project `name` is loaded (the file watcher picked
    /// its file up); fails after 20 s.
    pub async fn wait_loaded(&self, name: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (_, body) = self.admin_get("/api/admin/projects").await;
            let loaded = body["projects"]
                .as_array()
                .is_some_and(|list| list.iter().any(|p| p["name"] == name));
            if loaded {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "project {name} never loaded: {body:#}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Wait until the admin API reports a load error naming `name`; the
    /// error as JSON text. Fails after 20 s.
    pub async fn load_error(&self, name: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (_, body) = self.admin_get("/api/admin/projects").await;
            let found = body["errors"].as_array().and_then(|errors| {
                errors
                    .iter()
                    .find(|e| e.to_string().contains(name))
                    .cloned()
            });
            if let Some(error) = found {
                return error.to_string();
            }
            assert!(Instant::now() < deadline, "no error reported: {body:#}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Run a wharf CLI command against this folder's config.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(BIN)
            .arg("--config")
            .arg(self.dir.join("wharf.toml"))
            // The daemon listens on port 0: tell the CLI where it really is.
            .args(["--server", &self.base])
            .args(args)
            .env_remove("WHARF_CONFIG")
            .output()
            .unwrap()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGKILL: the daemon dies wherever it is.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM and wait for a clean exit; returns the exit status.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        signal(child.id(), "TERM");
        tokio::task::spawn_blocking(move || child.wait().unwrap())
            .await
            .unwrap()
    }

    /// Assert that neither secret ever reached the output.
    pub fn assert_no_secrets_logged(&self, secrets: &[&str]) {
        let output = self.output();
        assert!(!output.is_empty());
        for secret in secrets {
            assert!(
                !output.contains(secret),
                "a secret reached the log:\n{output}"
            );
        }
    }
}

impl Drop for Wharf {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A deployment's log (as the admin API returns it) as `[stream] text` lines.
pub fn log_text(deployment: &Value) -> String {
    deployment["log"]
        .as_array()
        .map(|lines| {
            lines
                .iter()
                .map(|l| {
                    format!(
                        "[{}] {}",
                        l["stream"].as_str().unwrap_or(""),
                        l["text"].as_str().unwrap_or("")
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// Assert a deployment's status; on failure show its reason and log.
pub fn assert_status(deployment: &Value, status: &str) {
    assert_eq!(
        deployment["status"],
        status,
        "reason: {}\nlog:\n{}",
        deployment["reason"],
        log_text(deployment)
    );
}

pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

/// A project deployed by a shell snippet (argv `/bin/sh -c SNIPPET`); the
/// snippet sees the WHARF_* environment.
pub fn script_project(image: &str, snippet: &str, stages: &str) -> String {
    format!(
        "image = \"{image}\"\ndeployer = \"script\"\n[script]\ncommand = [\"/bin/sh\", \"-c\", {snippet:?}]\ntimeout = \"60s\"\n{stages}\n"
    )
}

/// Wait for a condition on files or state, polling.
pub async fn eventually<F: FnMut() -> bool>(limit: Duration, mut check: F) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    check()
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// A loopback HTTP receiver: records bodies; `mode` decides the answer.
pub async fn receiver(mode: &'static str) -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = received.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let sink = sink.clone();
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = socket.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buffer.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buffer).to_string();
                    let Some((head, body)) = text.split_once("\r\n\r\n") else {
                        continue;
                    };
                    let length: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if body.len() < length {
                        continue;
                    }
                    sink.lock()
                        .unwrap()
                        .push(serde_json::from_str(body).unwrap());
                    match mode {
                        "hang" => tokio::time::sleep(Duration::from_secs(3600)).await,
                        "fail" => {
                            let _ = socket.write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
                        }
                        _ => {
                            let _ = socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
                        }
                    }
                    return;
                }
            });
        }
    });
    (url, received)
}
