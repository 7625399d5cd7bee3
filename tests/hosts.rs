//! One stage, two Docker engines: the machine's own (over its unix socket)
//! and a second `dockerd` this test starts with its own data root, bridge
//! and a TLS-verified TCP port on loopback, with certificates made here by
//! `openssl`. The real wharf binary deploys to both, one after the other;
//! when the second is down, the first is rolled back.
//!
//! And one engine over ssh: an `sshd` this test starts on a loopback
//! address of its own, through which wharf reaches the machine's engine
//! (`docker system dial-stdio` on the far side, as the docker CLI does).
//!
//! Skips (with a message) without Docker and the tools, unless
//! `WHARF_REQUIRE_DOCKER=1`. Needs root, as dockerd and sshd do.

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
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{build_and_push, docker_or_skip, free_port, unique, Behaviour, Cleanup, Registry};
use serde_json::Value;
use support::{assert_status, log_text, Wharf};

/// The port the test images serve on, inside their containers.
const HTTP_PORT: u16 = 80;
const DEPLOY_LIMIT: Duration = Duration::from_secs(120);

/// A second Docker engine on this machine: its own data and exec roots,
/// its own bridge (so its containers get published ports without touching
/// the first engine's iptables), reachable only over TLS on loopback.
struct SecondEngine {
    dir: tempfile::TempDir,
    child: Child,
    port: u16,
    bridge: String,
}

impl SecondEngine {
    fn start(test: &str) -> SecondEngine {
        let dir = tempfile::tempdir().unwrap();
        make_certificates(dir.path());
        let id = std::process::id();
        let bridge = format!("wharf{}", id % 100_000);
        let subnet = format!("172.30.{}.1/24", id % 250);
        run("ip", &["link", "add", &bridge, "type", "bridge"]);
        run("ip", &["addr", "add", &subnet, "dev", &bridge]);
        run("ip", &["link", "set", &bridge, "up"]);
        let port = free_port();
        let path = |name: &str| dir.path().join(name).display().to_string();
        // An empty daemon.json: the machine's /etc/docker/daemon.json
        // belongs to the first engine (its data-root would clash).
        std::fs::write(dir.path().join("daemon.json"), "{}").unwrap();
        let log = std::fs::File::create(dir.path().join("dockerd.log")).unwrap();
        let child = Command::new("dockerd")
            .args(["--config-file", &path("daemon.json")])
            .args(["--data-root", &path("data"), "--exec-root", &path("exec")])
            .args(["--pidfile", &path("dockerd.pid")])
            .args(["-H", &format!("unix://{}", path("docker.sock"))])
            .args(["-H", &format!("tcp://127.0.0.1:{port}")])
            .args(["--tlsverify", "--tlscacert", &path("ca.pem")])
            .args([
                "--tlscert",
                &path("server.pem"),
                "--tlskey",
                &path("server-key.pem"),
            ])
            .args(["--bridge", &bridge, "--iptables=false", "--ip6tables=false"])
            .arg("--ip-masq=false")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start a second dockerd");
        let engine = SecondEngine {
            dir,
            child,
            port,
            bridge,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !engine.docker_output(&["info"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "{test}: the second dockerd did not answer:\n{}",
                engine.output()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        engine
    }

    fn cert(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn docker_output(&self, args: &[&str]) -> std::process::Output {
        Command::new("docker")
            .arg("-H")
            .arg(format!("unix://{}", self.cert("docker.sock").display()))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run docker")
    }

    fn output(&self) -> String {
        std::fs::read_to_string(self.cert("dockerd.log")).unwrap_or_default()
    }

    /// Stop the engine as a machine going down would (its containers stop
    /// with it); the data stays for [`Drop`] to clean.
    fn stop(&mut self) {
        terminate(&mut self.child);
    }
}

impl Drop for SecondEngine {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let listing = self.docker_output(&["ps", "-aq"]);
            for id in String::from_utf8_lossy(&listing.stdout).split_whitespace() {
                let _ = self.docker_output(&["rm", "-f", "-v", id]);
            }
            terminate(&mut self.child);
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
        // dockerd unmounted its layers on shutdown; anything it could not
        // is left to the temp folder's removal (best effort).
        let _ = Command::new("umount")
            .arg("-R")
            .arg(self.cert("exec"))
            .stderr(Stdio::null())
            .status();
    }
}

fn terminate(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn run(program: &str, args: &[&str]) {
    let output = Command::new(program).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as
/// `docker --tlsverify` setups have them.
fn make_certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl (apt-get install openssl)");
        assert!(
            output.status.success(),
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=wharf test CA",
        "-keyout",
        "ca-key.pem",
        "-out",
        "ca.pem",
    ]);
    for (name, subject, extensions) in [
        (
            "server",
            "/CN=127.0.0.1",
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        ),
        ("client", "/CN=wharf", "extendedKeyUsage=clientAuth\n"),
    ] {
        let key = format!("{name}-key.pem");
        let request = format!("{name}.csr");
        let extfile = format!("{name}.ext");
        std::fs::write(dir.join(&extfile), extensions).unwrap();
        openssl(&[
            "req", "-newkey", "rsa:2048", "-nodes", "-subj", subject, "-keyout", &key, "-out",
            &request,
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            &request,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &extfile,
            "-out",
            &format!("{name}.pem"),
        ]);
    }
}

/// The host port an engine published the container's HTTP port on.
fn published_port(inspect: &Value) -> u16 {
    inspect["NetworkSettings"]["Ports"][format!("{HTTP_PORT}/tcp")][0]["HostPort"]
        .as_str()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no published port: {inspect:#}"))
}

fn inspect_with(output: std::process::Output) -> Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice::<Value>(&output.stdout).unwrap()[0].clone()
}

/// What one engine serves for the stage: the image its container runs and
/// the page it answers with.
async fn serving(inspect: Value) -> (String, Option<String>) {
    let image = inspect["Config"]["Image"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let port = published_port(&inspect);
    let page = common::served(port, "", Duration::from_millis(1)).await;
    (image, page)
}

async fn finished(wharf: &Wharf, accepted: &Value) -> Value {
    let id = accepted["deployments"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let deadline = Instant::now() + DEPLOY_LIMIT;
    loop {
        let deployment = wharf.deployment(&id).await;
        if matches!(deployment["status"].as_str(), Some("succeeded" | "failed")) {
            return deployment;
        }
        assert!(
            Instant::now() < deadline,
            "deployment still {} after {DEPLOY_LIMIT:?}: {deployment:#}\nwharf:\n{}",
            deployment["status"],
            wharf.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stage_deploys_to_two_engines_and_rolls_back_the_first_when_the_second_is_down() {
    let test = "hosts";
    if !docker_or_skip(test) {
        return;
    }
    let mut second = SecondEngine::start(test);
    let registry = Registry::start(None);
    let name = unique(test);
    let container = format!("wharf-{name}-dev");
    let _cleanup = Cleanup {
        projects: vec![name.clone()],
        names: vec![container.clone()],
        repositories: vec![format!("{}/", registry.host())],
    };
    let local = std::env::var("DOCKER_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unix:///var/run/docker.sock".into());
    let wharf = Wharf::start(&format!(
        "[hosts.one]\ndocker_host = \"{local}\"\n\n[hosts.two]\ndocker_host = \"tcp://127.0.0.1:{}\"\ntls_ca = \"{}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
        second.port,
        second.cert("ca.pem").display(),
        second.cert("client.pem").display(),
        second.cert("client-key.pem").display(),
    ))
    .await;

    // `wharf check` reaches both engines, the second over TLS.
    let check = wharf.cli(&["check"]);
    let printed = format!(
        "{:?} {}{}",
        check.status,
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(printed.contains("ok: host one answers"), "{printed}");
    assert!(printed.contains("ok: host two answers"), "{printed}");

    let repository = format!("{}/acme/{name}", registry.host());
    wharf.write_project(
        &name,
        &format!(
            "image = \"{repository}\"\n\n[stages.dev]\ntags = [\"*\"]\n\n[docker]\nhosts = [\"one\", \"two\"]\nports = [\"127.0.0.1::{HTTP_PORT}\"]\nhealth.http = {{ path = \"/\", port = {HTTP_PORT} }}\nstop_timeout = \"1s\"\n"
        ),
    );
    for tag in ["v1", "v2"] {
        build_and_push(
            &format!("{repository}:{tag}"),
            &Behaviour::Serves {
                version: format!("web {tag}"),
                port: HTTP_PORT,
            },
        );
    }
    build_and_push(
        &format!("{repository}:v3"),
        &Behaviour::Serves {
            version: "web v3".into(),
            port: HTTP_PORT,
        },
    );
    let push = |tag: &str| format!("{{\"image\": \"{repository}:{tag}\"}}");
    let on_both = || async {
        let one = common::inspect(&container).expect("the container on the first engine");
        let two = inspect_with(second.docker_output(&["inspect", &container]));
        (serving(one).await, serving(two).await)
    };

    for tag in ["v1", "v2"] {
        let deployment = finished(&wharf, &wharf.push_until_accepted(&push(tag)).await).await;
        assert_status(&deployment, "succeeded");
        let summary = deployment["reason"].as_str().unwrap_or_default();
        assert!(
            summary.contains("one (") && summary.contains("two ("),
            "{summary}"
        );
        let expected = (format!("{repository}:{tag}"), Some(format!("web {tag}")));
        assert_eq!(on_both().await, (expected.clone(), expected), "after {tag}");
        let log = log_text(&deployment);
        assert!(log.contains("== two (tcp://127.0.0.1:"), "{log}");
    }

    // The second machine goes down: v3 reaches the first, then fails on
    // the second, and the first is put back on v2.
    second.stop();
    let deployment = finished(&wharf, &wharf.push_until_accepted(&push("v3")).await).await;
    assert_status(&deployment, "failed");
    let reason = deployment["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("cannot reach the Docker engine two (tcp://127.0.0.1:")
            && reason.contains("onnection refused"),
        "{reason}"
    );
    assert!(
        reason.contains("rolled back the hosts already done: one (")
            && reason.contains("serves again"),
        "{reason}"
    );
    let log = log_text(&deployment);
    assert!(log.contains("== one ("), "{log}");
    assert!(
        log.contains("== one (unix://") && log.contains("): rolling back =="),
        "{log}"
    );
    let one = common::inspect(&container).expect("the container on the first engine");
    assert_eq!(
        serving(one).await,
        (format!("{repository}:v2"), Some("web v2".to_string())),
        "the first engine serves v2 again\n{log}"
    );
    assert!(
        common::inspect(&format!("{container}-wharf-old")).is_none(),
        "no backup left behind on the first engine"
    );
}

/// An `sshd` on port 22 of a loopback address of this process's own (the
/// ssh transport takes no port in the URL), accepting one key for root.
struct Sshd {
    dir: tempfile::TempDir,
    child: Child,
    address: String,
}

impl Sshd {
    /// `None` when port 22 of the address is taken — a machine's own sshd
    /// listening on all addresses — which this test cannot work around:
    /// the transport takes no port.
    fn start(test: &str) -> Option<Sshd> {
        let dir = tempfile::tempdir().unwrap();
        let address = format!(
            "127.0.{}.{}",
            100 + std::process::id() % 100,
            2 + std::process::id() % 250
        );
        if let Err(e) = std::net::TcpListener::bind((address.as_str(), 22)) {
            eprintln!(
                "SKIPPED {test}: port 22 of {address} is taken ({e}): another sshd listens there"
            );
            return None;
        }
        let path = |name: &str| dir.path().join(name).display().to_string();
        for key in ["host_key", "client_key"] {
            run(
                "ssh-keygen",
                &["-q", "-t", "ed25519", "-N", "", "-f", &path(key)],
            );
        }
        std::fs::copy(path("client_key.pub"), path("authorized_keys")).unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        std::fs::write(
            path("sshd_config"),
            format!(
                "ListenAddress {address}:22\nHostKey {}\nAuthorizedKeysFile {}\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPidFile {}\n",
                path("host_key"),
                path("authorized_keys"),
                path("sshd.pid"),
            ),
        )
        .unwrap();
        forget_host_key(&address);
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f", &path("sshd_config")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(path("sshd.log")).unwrap())
            .spawn()
            .expect("start sshd (apt-get install openssh-server)");
        let sshd = Sshd {
            dir,
            child,
            address,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect((sshd.address.as_str(), 22)).is_err() {
            assert!(
                Instant::now() < deadline,
                "{test}: sshd did not listen on {}:22: {}",
                sshd.address,
                std::fs::read_to_string(sshd.dir.path().join("sshd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(sshd)
    }

    fn client_key(&self) -> PathBuf {
        self.dir.path().join("client_key")
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        terminate(&mut self.child);
        forget_host_key(&self.address);
    }
}

/// ssh keeps host keys in the user's own known_hosts (it reads the home
/// directory from the password database, not `$HOME`); a key from an
/// earlier run would make it refuse this run's new one.
fn forget_host_key(address: &str) {
    let _ = Command::new("ssh-keygen")
        .args(["-R", address])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_engine_over_ssh_deploys() {
    let test = "hosts-ssh";
    if !docker_or_skip(test) {
        return;
    }
    let Some(sshd) = Sshd::start(test) else {
        return;
    };
    let registry = Registry::start(None);
    let name = unique(test);
    let container = format!("wharf-{name}-dev");
    let _cleanup = Cleanup {
        projects: vec![name.clone()],
        names: vec![container.clone()],
        repositories: vec![format!("{}/", registry.host())],
    };
    let wharf = Wharf::start(&format!(
        "[hosts.far]\ndocker_host = \"ssh://root@{}\"\nssh_key = \"{}\"\n",
        sshd.address,
        sshd.client_key().display()
    ))
    .await;
    let check = wharf.cli(&["check"]);
    let printed = String::from_utf8_lossy(&check.stdout).to_string();
    assert!(printed.contains("ok: host far answers"), "{printed}");

    let repository = format!("{}/acme/{name}", registry.host());
    wharf.write_project(
        &name,
        &format!(
            "image = \"{repository}\"\n\n[stages.dev]\ntags = [\"*\"]\n\n[docker]\nhost = \"far\"\nports = [\"127.0.0.1::{HTTP_PORT}\"]\nhealth.http = {{ path = \"/\", port = {HTTP_PORT} }}\n"
        ),
    );
    build_and_push(
        &format!("{repository}:v1"),
        &Behaviour::Serves {
            version: "web v1".into(),
            port: HTTP_PORT,
        },
    );
    let accepted = wharf
        .push_until_accepted(&format!("{{\"image\": \"{repository}:v1\"}}"))
        .await;
    let deployment = finished(&wharf, &accepted).await;
    assert_status(&deployment, "succeeded");
    let log = log_text(&deployment);
    assert!(
        log.contains(&format!("at far (ssh://root@{})", sshd.address)),
        "{log}"
    );
    let one = common::inspect(&container).expect("the container on the first engine");
    assert_eq!(
        serving(one).await,
        (format!("{repository}:v1"), Some("web v1".to_string()))
    );
}
