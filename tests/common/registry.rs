//! A real Debian `docker-registry` for tests, and plain distribution API
//! pushes to it (blobs and manifests, so no engine is needed). Shared by
//! the daemon's tests (`mod common`) and the registry crate's
//! (`crates/registry/tests/registry.rs`, through `#[path]`): it needs
//! nothing of either crate.
#![allow(dead_code)]

use std::io::Read;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

/// Debian's docker-registry (CNCF distribution 2.8).
pub const REGISTRY: &str = "/usr/bin/docker-registry";

/// An OCI image manifest's media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// `missing == None`: go on. Else print why and skip, or panic when
/// `WHARF_REQUIRE_DOCKER=1`.
pub fn skip_unless(test: &str, missing: Option<String>) -> bool {
    match missing {
        None => true,
        Some(why) if std::env::var("WHARF_REQUIRE_DOCKER").as_deref() == Ok("1") => {
            panic!("{test}: {why}, and WHARF_REQUIRE_DOCKER=1")
        }
        Some(why) => {
            eprintln!("SKIPPED {test}: {why} (set WHARF_REQUIRE_DOCKER=1 to fail instead)");
            false
        }
    }
}

/// True when Debian's docker-registry is there (tests that need a registry
/// but no engine). Otherwise as [`docker_or_skip`].
pub fn registry_or_skip(test: &str) -> bool {
    let missing = (!Path::new(REGISTRY).exists())
        .then(|| format!("{REGISTRY} is missing (apt-get install docker-registry)"));
    skip_unless(test, missing)
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET `path` from 127.0.0.1:`port`: the status code and the body of any
/// HTTP answer.
pub fn http_answer(port: u16, path: &str) -> Option<(String, String)> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    use std::io::Write;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?;
    Some((status.to_string(), body.to_string()))
}

/// A `docker-registry` on a free loopback port, storing into a temp folder.
/// The engine treats 127.0.0.0/8 registries as insecure, so plain HTTP works.
/// It can be stopped and started again on the same port with the same data.
pub struct Registry {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    log: PathBuf,
}

impl Registry {
    /// Start it; with `notify`, its notifications go to that URL (wharf's
    /// webhook), which is how a real registry triggers wharf.
    pub fn start(notify: Option<&str>) -> Registry {
        Registry::start_with(notify, None)
    }

    /// A registry that serves only `user` with `password` (htpasswd, the
    /// distribution registry's basic auth): anonymous pulls are refused.
    pub fn start_private(user: &str, password: &str) -> Registry {
        Registry::start_with(None, Some((user, password)))
    }

    fn start_with(notify: Option<&str>, login: Option<(&str, &str)>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if let Some(url) = notify {
            config.push_str(&format!(
                "notifications:\n  endpoints:\n    - name: wharf\n      url: {url}\n      timeout: 2s\n      threshold: 1\n      backoff: 1s\n"
            ));
        }
        if let Some((user, password)) = login {
            let hash = bcrypt::hash(password, 5).unwrap();
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, format!("{user}:{hash}\n")).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: wharf-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let log = dir.path().join("registry.log");
        let mut registry = Registry {
            port,
            child: None,
            dir,
            log,
        };
        registry.resume();
        registry
    }

    /// Start it again after [`Registry::stop`] (same port, same data), and
    /// wait until it answers.
    pub fn resume(&mut self) {
        let path = self.dir.path();
        let child = Command::new(REGISTRY)
            .arg("serve")
            .arg(path.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&self.log).unwrap())
            .stderr(std::fs::File::create(path.join("registry.err")).unwrap())
            .spawn()
            .expect("start docker-registry");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        // 200, or 401 from a registry that wants a login.
        while http_answer(self.port, "/v2/").is_none() {
            assert!(
                Instant::now() < deadline,
                "docker-registry did not answer on port {}: {}",
                self.port,
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kill it (a registry that is down).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `127.0.0.1:<port>`, the registry part of image names.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn output(&self) -> String {
        let err = self.log.with_file_name("registry.err");
        format!(
            "{}{}",
            std::fs::read_to_string(&self.log).unwrap_or_default(),
            std::fs::read_to_string(err).unwrap_or_default()
        )
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `sha256:<hex>` of `bytes`, as registries name blobs and manifests.
pub fn sha256(bytes: &[u8]) -> String {
    let hex: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// Pushes blobs and manifests with plain distribution API calls.
pub struct Pusher {
    http: reqwest::Client,
    base: String,
    login: Option<(String, String)>,
}

impl Pusher {
    pub fn new(registry: &Registry, login: Option<(&str, &str)>) -> Pusher {
        Pusher {
            http: reqwest::Client::new(),
            base: format!("http://{}", registry.host()),
            login: login.map(|(u, p)| (u.to_string(), p.to_string())),
        }
    }

    fn authed(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.login {
            Some((user, password)) => request.basic_auth(user, Some(password)),
            None => request,
        }
    }

    /// Upload `bytes` as a blob (POST an upload, PUT it with its digest).
    pub async fn blob(&self, repository: &str, bytes: &[u8]) -> (String, usize) {
        let digest = sha256(bytes);
        let started = self
            .authed(
                self.http
                    .post(format!("{}/v2/{repository}/blobs/uploads/", self.base)),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(started.status(), 202, "start upload: {started:?}");
        let location = started.headers()["location"].to_str().unwrap();
        let mut url = reqwest::Url::parse(&self.base)
            .unwrap()
            .join(location)
            .unwrap();
        url.query_pairs_mut().append_pair("digest", &digest);
        let done = self
            .authed(self.http.put(url))
            .header("content-type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(done.status(), 201, "finish upload: {done:?}");
        (digest, bytes.len())
    }

    /// PUT a manifest under `tag`; its digest, as the registry reports it.
    pub async fn manifest(
        &self,
        repository: &str,
        tag: &str,
        media_type: &str,
        body: &str,
    ) -> String {
        let response = self
            .authed(
                self.http
                    .put(format!("{}/v2/{repository}/manifests/{tag}", self.base)),
            )
            .header("content-type", media_type)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = response.status();
        let digest = response
            .headers()
            .get("docker-content-digest")
            .map(|d| d.to_str().unwrap().to_string());
        assert_eq!(status, 201, "{}", response.text().await.unwrap());
        let digest = digest.unwrap();
        assert_eq!(digest, sha256(body.as_bytes()), "the registry rewrote it");
        digest
    }

    /// A single-platform image whose config carries `marker` (so each
    /// marker makes another digest), as an OCI or a Docker v2 manifest.
    pub async fn image(
        &self,
        repository: &str,
        tag: &str,
        marker: &str,
        media_type: &str,
    ) -> (String, usize, String) {
        let (config_type, layer_type) = if media_type == OCI_MANIFEST {
            (
                "application/vnd.oci.image.config.v1+json",
                "application/vnd.oci.image.layer.v1.tar",
            )
        } else {
            (
                "application/vnd.docker.container.image.v1+json",
                "application/vnd.docker.image.rootfs.diff.tar",
            )
        };
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","config":{{"Labels":{{"marker":"{marker}"}}}},"rootfs":{{"type":"layers","diff_ids":[]}}}}"#
        );
        let (config_digest, config_size) = self.blob(repository, config.as_bytes()).await;
        let (layer_digest, layer_size) = self
            .blob(repository, format!("layer {marker}").as_bytes())
            .await;
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{media_type}","config":{{"mediaType":"{config_type}","digest":"{config_digest}","size":{config_size}}},"layers":[{{"mediaType":"{layer_type}","digest":"{layer_digest}","size":{layer_size}}}]}}"#
        );
        let digest = self.manifest(repository, tag, media_type, &manifest).await;
        (digest, manifest.len(), manifest)
    }
}
