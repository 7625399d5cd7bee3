//! Real-engine test support: test images built `FROM scratch` with
//! busybox-static, a Debian `docker-registry` on a free loopback port (its
//! notifications pointed at wharf), pushes, and a guard that removes every
//! container, image and process a test made, even when the test fails.
//!
//! Tests that need Docker call [`docker_or_skip`] first: without an engine
//! they print why and return, unless `WHARF_REQUIRE_DOCKER=1` (CI), where
//! they fail.
#![allow(dead_code)]

pub mod load;
pub mod registry;

// Not every test binary uses each of them.
#[allow(unused_imports)]
pub use registry::{free_port, registry_or_skip, Registry, REGISTRY};
use registry::{http_answer, skip_unless};

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::Wharf;

/// Where Debian's busybox-static puts its binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// True when the engine and the test tools are there. Otherwise prints why
/// and returns false, or panics when `WHARF_REQUIRE_DOCKER=1`.
pub fn docker_or_skip(test: &str) -> bool {
    let missing = if !Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        Some("`docker info` fails: no Docker engine".to_string())
    } else if !is_static_busybox(Path::new(BUSYBOX)) {
        Some(format!(
            "{BUSYBOX} is not busybox-static (apt-get install busybox-static)"
        ))
    } else if !Path::new(REGISTRY).exists() {
        Some(format!(
            "{REGISTRY} is missing (apt-get install docker-registry)"
        ))
    } else {
        None
    };
    skip_unless(test, missing)
}

/// A dynamically linked busybox would not run in a `FROM scratch` image:
/// the ELF file must have no program interpreter (no `PT_INTERP` header).
fn is_static_busybox(path: &Path) -> bool {
    let Ok(bytes) = std::fs::read(path) else {
        return false;
    };
    let u16_at = |at: usize| {
        bytes
            .get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
    };
    let u64_at = |at: usize| {
        bytes
            .get(at..at + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()) as usize)
    };
    // 64-bit little-endian ELF only (what the tests run on).
    if bytes.get(..6) != Some(&[0x7f, b'E', b'L', b'F', 2, 1][..]) {
        return false;
    }
    let (Some(offset), Some(size), Some(count)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38)) else {
        return false;
    };
    const PT_INTERP: u32 = 3;
    (0..count).all(|i| {
        let at = offset + i * size;
        bytes
            .get(at..at + 4)
            .is_some_and(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) != PT_INTERP)
    })
}

/// A name unique to this test and process, usable in container, project
/// and repository names.
pub fn unique(test: &str) -> String {
    format!("{test}-{}", std::process::id())
}

/// Run the docker CLI; panics with its stderr when it fails.
pub fn docker(args: &[&str]) -> String {
    let output = docker_output(args);
    assert!(
        output.status.success(),
        "docker {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

pub fn docker_output(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .env("DOCKER_BUILDKIT", "0")
        .stdin(Stdio::null())
        .output()
        .expect("run docker")
}

/// What a test image does when it starts.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// `busybox httpd` on `port`, serving `version` at `/`.
    Serves { version: String, port: u16 },
    /// Like `Serves`, with a HEALTHCHECK that passes once httpd answers.
    ServesHealthy { version: String, port: u16 },
    /// Like `Serves`, with a HEALTHCHECK that always fails.
    FailsHealthcheck { version: String, port: u16 },
    /// Writes a line to stderr and exits 3 at once.
    ExitsAtOnce,
    /// An application that takes 2 s to boot: `busybox httpd` on `port`
    /// after `sleep 2`, serving `version` at `/` and, at
    /// `/cgi-bin/slow?<seconds>`, `version` after that many seconds.
    BootsSlowly { version: String, port: u16 },
}

/// Build `tag` from scratch: busybox-static plus what `behaviour` needs.
pub fn build_image(tag: &str, behaviour: &Behaviour) {
    let context = tempfile::tempdir().unwrap();
    std::fs::copy(BUSYBOX, context.path().join("busybox")).unwrap();
    std::fs::create_dir(context.path().join("www")).unwrap();
    let mut dockerfile = String::from("FROM scratch\nCOPY busybox /bin/busybox\n");
    let serve = |version: &str, port: u16, dockerfile: &mut String| {
        std::fs::write(
            context.path().join("www/index.html"),
            format!("{version}\n"),
        )
        .unwrap();
        dockerfile.push_str(&format!(
            "COPY www /www\nEXPOSE {port}\nLABEL org.opencontainers.image.title=\"wharf test\" org.opencontainers.image.source=\"https://example.com/wharf-test\"\nCMD [\"/bin/busybox\", \"httpd\", \"-f\", \"-p\", \"{port}\", \"-h\", \"/www\"]\n"
        ));
    };
    match behaviour {
        Behaviour::Serves { version, port } => serve(version, *port, &mut dockerfile),
        Behaviour::ServesHealthy { version, port } => {
            serve(version, *port, &mut dockerfile);
            dockerfile.push_str(&format!(
                "HEALTHCHECK --interval=1s --timeout=2s --retries=3 CMD [\"/bin/busybox\", \"wget\", \"-q\", \"-O\", \"/dev/null\", \"http://127.0.0.1:{port}/\"]\n"
            ));
        }
        Behaviour::FailsHealthcheck { version, port } => {
            serve(version, *port, &mut dockerfile);
            dockerfile.push_str(&format!(
                "HEALTHCHECK --interval=1s --timeout=2s --retries=2 CMD [\"/bin/busybox\", \"wget\", \"-q\", \"-O\", \"/dev/null\", \"http://127.0.0.1:{port}/no-such-page\"]\n"
            ));
        }
        Behaviour::BootsSlowly { version, port } => {
            std::fs::write(
                context.path().join("www/index.html"),
                format!("{version}\n"),
            )
            .unwrap();
            std::fs::create_dir(context.path().join("www/cgi-bin")).unwrap();
            let slow = context.path().join("www/cgi-bin/slow");
            std::fs::write(
                &slow,
                format!("#!/bin/busybox sh\nbusybox sleep \"${{QUERY_STRING:-3}}\"\nprintf 'Content-Type: text/plain\\r\\n\\r\\n{version}\\n'\n"),
            )
            .unwrap();
            std::fs::set_permissions(&slow, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
            dockerfile.push_str(&format!(
                "COPY www /www\nEXPOSE {port}\nENV PATH=/bin\nCMD [\"/bin/busybox\", \"sh\", \"-c\", \"busybox sleep 2; exec busybox httpd -f -p {port} -h /www\"]\n"
            ));
        }
        Behaviour::ExitsAtOnce => dockerfile.push_str(
            "CMD [\"/bin/busybox\", \"sh\", \"-c\", \"echo crashing on purpose >&2; exit 3\"]\n",
        ),
    }
    std::fs::write(context.path().join("Dockerfile"), dockerfile).unwrap();
    // No layer cache: tests run in parallel and remove their images, and a
    // build must never lean on a cached layer another test is deleting.
    docker(&[
        "build",
        "--no-cache",
        "-q",
        "-t",
        tag,
        context.path().to_str().unwrap(),
    ]);
}

/// Build and push `tag`.
pub fn build_and_push(tag: &str, behaviour: &Behaviour) {
    build_image(tag, behaviour);
    docker(&["push", tag]);
}

/// Removes, on drop, every container labelled with one of `projects` or
/// named with one of `names`, and every image of `repositories` (prefixes
/// such as `127.0.0.1:5000/`). Runs when a test fails too.
#[derive(Default)]
pub struct Cleanup {
    pub projects: Vec<String>,
    pub names: Vec<String>,
    pub repositories: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let mut containers = Vec::new();
        for project in &self.projects {
            let label = format!("label=wharf.project={project}");
            containers.extend(
                docker_output(&["ps", "-aq", "--filter", &label])
                    .stdout
                    .split(|b| *b == b'\n')
                    .map(|l| String::from_utf8_lossy(l).trim().to_string())
                    .filter(|l| !l.is_empty()),
            );
        }
        containers.extend(self.names.iter().cloned());
        for name in &self.names {
            containers.push(format!("{name}-wharf-old"));
            containers.push(format!("{name}-wharf-retired"));
        }
        for container in containers {
            let _ = docker_output(&["rm", "-f", "-v", &container]);
        }
        let listing = docker_output(&[
            "images",
            "--no-trunc",
            "--format",
            "{{.ID}} {{.Repository}}",
        ]);
        let mut ids: Vec<String> = String::from_utf8_lossy(&listing.stdout)
            .lines()
            .filter_map(|line| line.split_once(' '))
            .filter(|(_, repository)| {
                self.repositories
                    .iter()
                    .any(|prefix| repository.starts_with(prefix.as_str()))
            })
            .map(|(id, _)| id.to_string())
            .collect();
        ids.sort();
        ids.dedup();
        for id in ids {
            let _ = docker_output(&["rmi", "-f", &id]);
        }
    }
}

/// GET `path` from 127.0.0.1:`port`: the body of a 200, else `None`.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    let (status, body) = http_answer(port, path)?;
    (status == "200").then_some(body)
}

/// What `127.0.0.1:port/` serves, trimmed, polling until `expected` or
/// `limit`; returns the last answer.
pub async fn served(port: u16, expected: &str, limit: Duration) -> Option<String> {
    let deadline = Instant::now() + limit;
    loop {
        let answer = tokio::task::spawn_blocking(move || http_get(port, "/"))
            .await
            .unwrap()
            .map(|body| body.trim().to_string());
        if answer.as_deref() == Some(expected) || Instant::now() >= deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `docker inspect` of one container as JSON, `None` when it does not exist.
pub fn inspect(container: &str) -> Option<serde_json::Value> {
    let output = docker_output(&["inspect", container]);
    if !output.status.success() {
        return None;
    }
    let mut list: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).ok()?;
    list.pop()
}

/// Names of all containers (any state) labelled `wharf.project=<project>`.
pub fn containers_of(project: &str) -> Vec<String> {
    let label = format!("label=wharf.project={project}");
    let mut names: Vec<String> =
        docker(&["ps", "-a", "--filter", &label, "--format", "{{.Names}}"])
            .lines()
            .map(str::to_string)
            .filter(|l| !l.is_empty())
            .collect();
    names.sort();
    names
}

/// The wharf binary with its own environment (which `support::Wharf` does
/// not set): for a daemon that must see another `DOCKER_HOST`.
pub struct Daemon {
    child: Child,
    pub base: String,
    pub dir: tempfile::TempDir,
    output: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Daemon {
    pub fn start(extra_toml: &str, env: &[(&str, &str)]) -> Daemon {
        use std::io::{BufRead, BufReader};
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("wharf.toml"),
            format!("listen = \"127.0.0.1:0\"\nprojects_dir = \"projects\"\nstate_dir = \"state\"\n{extra_toml}\n"),
        )
        .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_wharf"))
            .arg("--config")
            .arg(dir.path().join("wharf.toml"))
            .env_remove("WHARF_CONFIG")
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start wharf");
        let output = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let lines = output.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("address=127.0.0.1:").nth(1) {
                    let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    let _ = port_tx.send(port);
                }
                lines.lock().unwrap().push(line);
            }
        });
        let port = port_rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("wharf did not start: {:?}", output.lock().unwrap()));
        Daemon {
            child,
            base: format!("http://127.0.0.1:{port}"),
            dir,
            output,
        }
    }

    pub fn output(&self) -> String {
        self.output.lock().unwrap().join("\n")
    }

    /// (webhook secret, admin token) from the generated settings.toml.
    pub fn secrets(&self) -> (String, String) {
        let text = std::fs::read_to_string(self.dir.path().join("state/settings.toml")).unwrap();
        let table: toml::Table = text.parse().unwrap();
        (
            table["webhook_secret"].as_str().unwrap().to_string(),
            table["admin_token"].as_str().unwrap().to_string(),
        )
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A deployment on this machine takes a few seconds; leave room for a
/// loaded CI box.
pub const DEPLOY_LIMIT: Duration = Duration::from_secs(60);

/// A wharf, a registry notifying it, one docker project's names, and the
/// guard: the docker and route tests' stack. Fields drop in order: wharf
/// stops first, then the cleanup, then the registry.
pub struct DockerStack {
    pub wharf: Wharf,
    pub cleanup: Cleanup,
    pub registry: Registry,
    /// Project (and repository) name, unique to the test.
    pub name: String,
    /// `127.0.0.1:<registry>/acme/<name>`.
    pub repository: String,
}

impl DockerStack {
    pub async fn start(test: &str, wharf_toml: &str, notify: bool) -> DockerStack {
        let wharf = Wharf::start(wharf_toml).await;
        let url = format!("{}/api/webhook/{}", wharf.base, wharf.secret());
        let registry = Registry::start(notify.then_some(url.as_str()));
        let name = unique(test);
        let repository = format!("{}/acme/{name}", registry.host());
        let cleanup = Cleanup {
            projects: vec![name.clone()],
            names: vec![format!("wharf-{name}-dev")],
            repositories: vec![format!("{}/", registry.host())],
        };
        DockerStack {
            wharf,
            cleanup,
            registry,
            name,
            repository,
        }
    }

    pub fn container(&self) -> String {
        format!("wharf-{}-dev", self.name)
    }

    pub fn image(&self, tag: &str) -> String {
        format!("{}:{tag}", self.repository)
    }

    /// Write the project (stage `dev`, every tag) and wait until it loaded.
    pub async fn project(&self, docker_table: &str) {
        self.wharf.write_project(
            &self.name,
            &format!(
                "image = \"{}\"\n\n[stages.dev]\ntags = [\"*\"]\n\n[docker]\n{docker_table}\n",
                self.repository
            ),
        );
        self.wharf.wait_loaded(&self.name).await;
    }

    /// Wait for the deployment of `tag` to end; returns it with its log.
    pub async fn outcome(&self, tag: &str) -> Value {
        self.outcome_within(tag, DEPLOY_LIMIT).await
    }

    /// [`DockerStack::outcome`], waiting up to `limit`.
    pub async fn outcome_within(&self, tag: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let (_, body) = self
                .wharf
                .admin_get(&format!("/api/admin/deployments?project={}", self.name))
                .await;
            let found = body["deployments"].as_array().and_then(|list| {
                list.iter()
                    .find(|d| d["tag"] == tag && is_final(&d["status"]))
                    .cloned()
            });
            if let Some(deployment) = found {
                return self
                    .wharf
                    .deployment(deployment["id"].as_str().unwrap())
                    .await;
            }
            assert!(
                Instant::now() < deadline,
                "no finished deployment of {tag} after {limit:?}: {body:#}\nwharf:\n{}\nregistry:\n{}",
                self.wharf.output(),
                self.registry.output()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Build and push `tag`; the registry's notification deploys it.
    pub async fn push_and_wait(&self, tag: &str, behaviour: Behaviour) -> Value {
        build_and_push(&self.image(tag), &behaviour);
        self.outcome(tag).await
    }
}

pub fn is_final(status: &Value) -> bool {
    matches!(
        status.as_str(),
        Some("succeeded" | "failed" | "rejected" | "superseded" | "interrupted")
    )
}
