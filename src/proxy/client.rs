//! The daemon's side of the control socket: [`ProxyClient`] implements the
//! plugins' [`Routes`] handle and, when it manages the proxy, starts a
//! detached one the first time it is needed and none answers — so a
//! daemon without routes never runs a proxy at all.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tracing::info;
use wharf_plugin_api::routes::{RouteError, RouteSpec, RouteState};
use wharf_plugin_api::Routes;

use super::control::{ControlRequest, SOCKET_FILE};

/// How long one exchange with the proxy may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// How long a proxy just started may take to answer.
const START_LIMIT: Duration = Duration::from_secs(10);
/// The longest answer read: a list of many routes.
const MAX_ANSWER: u64 = 16 * 1024 * 1024;

/// Talks to the proxy of one state dir; one connection per call, so a
/// restarted proxy is simply reached again.
#[derive(Debug, Clone)]
pub struct ProxyClient {
    state_dir: PathBuf,
    socket: PathBuf,
    /// Start a proxy when none answers (`[proxy] manage`).
    manage: bool,
    /// One start at a time.
    starting: Arc<tokio::sync::Mutex<()>>,
}

impl ProxyClient {
    /// A client for the proxy of `state_dir` that never starts one.
    pub fn new(state_dir: &Path) -> ProxyClient {
        ProxyClient {
            state_dir: state_dir.to_path_buf(),
            socket: state_dir.join(SOCKET_FILE),
            manage: false,
            starting: Arc::default(),
        }
    }

    /// A client that starts a detached proxy when none answers.
    pub fn managing(state_dir: &Path) -> ProxyClient {
        ProxyClient {
            manage: true,
            ..ProxyClient::new(state_dir)
        }
    }

    /// Whether a proxy answers right now (never starts one).
    pub async fn answers(&self) -> bool {
        UnixStream::connect(&self.socket).await.is_ok()
    }

    async fn connect(&self) -> Result<UnixStream, RouteError> {
        let refused = match UnixStream::connect(&self.socket).await {
            Ok(stream) => return Ok(stream),
            Err(e) => e,
        };
        if !self.manage {
            return Err(RouteError::Unreachable(format!(
                "the route proxy does not answer on {} ({refused}); start wharf-proxy.service, or set [proxy] manage = true",
                self.socket.display()
            )));
        }
        let _one = self.starting.lock().await;
        if let Ok(stream) = UnixStream::connect(&self.socket).await {
            return Ok(stream);
        }
        start(&self.state_dir, &self.socket)
            .await
            .map_err(|e| RouteError::Unreachable(format!("{e:#}")))?;
        UnixStream::connect(&self.socket).await.map_err(|e| {
            RouteError::Unreachable(format!(
                "the route proxy does not answer on {}: {e}",
                self.socket.display()
            ))
        })
    }

    async fn call(&self, request: &ControlRequest) -> Result<Value, RouteError> {
        let unreachable = RouteError::Unreachable;
        let exchange = async {
            let stream = self.connect().await?;
            let (read, mut write) = stream.into_split();
            let mut line =
                serde_json::to_string(request).map_err(|e| unreachable(e.to_string()))?;
            line.push('\n');
            write
                .write_all(line.as_bytes())
                .await
                .map_err(|e| unreachable(format!("cannot write to the route proxy: {e}")))?;
            let mut answer = String::new();
            BufReader::new(read)
                .take(MAX_ANSWER)
                .read_line(&mut answer)
                .await
                .map_err(|e| unreachable(format!("cannot read the route proxy's answer: {e}")))?;
            let answer: Value = serde_json::from_str(&answer).map_err(|e| {
                unreachable(format!(
                    "the route proxy answered something unreadable: {e}"
                ))
            })?;
            if answer.get("ok") == Some(&json!(true)) {
                Ok(answer)
            } else {
                Err(RouteError::Refused(format!(
                    "the route proxy refused: {}",
                    answer
                        .get("error")
                        .and_then(Value::as_str)
                        .unwrap_or("no reason given")
                )))
            }
        };
        tokio::time::timeout(TIMEOUT, exchange).await.map_err(|_| {
            unreachable(format!(
                "the route proxy did not answer within {}s",
                TIMEOUT.as_secs()
            ))
        })?
    }

    /// Every route with its counts.
    ///
    /// # Errors
    /// The proxy does not answer.
    pub async fn list(&self) -> Result<Vec<RouteState>, RouteError> {
        let answer = self.call(&ControlRequest::List).await?;
        serde_json::from_value(answer.get("routes").cloned().unwrap_or(Value::Null)).map_err(|e| {
            RouteError::Unreachable(format!("the route proxy listed something unreadable: {e}"))
        })
    }

    /// Move the route on `listen` to `address` while it still serves
    /// `container_id`; whether it moved.
    ///
    /// # Errors
    /// The proxy does not answer or cannot save its table.
    pub async fn relocate(
        &self,
        listen: SocketAddr,
        container_id: &str,
        address: SocketAddr,
    ) -> Result<bool, RouteError> {
        let answer = self
            .call(&ControlRequest::Relocate {
                listen,
                container_id: container_id.to_string(),
                address,
            })
            .await?;
        Ok(answer.get("moved") == Some(&json!(true)))
    }

    /// Remove the route on `listen`; whether there was one.
    ///
    /// # Errors
    /// The proxy does not answer or cannot save its table.
    pub async fn remove(&self, listen: SocketAddr) -> Result<bool, RouteError> {
        let answer = self.call(&ControlRequest::Remove { listen }).await?;
        Ok(answer.get("removed") == Some(&json!(true)))
    }
}

#[async_trait]
impl Routes for ProxyClient {
    async fn get(&self, listen: SocketAddr) -> Result<Option<RouteState>, RouteError> {
        Ok(self
            .list()
            .await?
            .into_iter()
            .find(|r| r.spec.listen == listen))
    }

    async fn set(&self, route: &RouteSpec) -> Result<(), RouteError> {
        self.call(&ControlRequest::Set {
            route: route.clone(),
        })
        .await
        .map(|_| ())
    }
}

/// Start `wharf proxy` for `state_dir`, detached (its own process group,
/// output to `<state_dir>/proxy.log`) so that it outlives this daemon, and
/// wait until it answers on `socket`.
async fn start(state_dir: &Path, socket: &Path) -> anyhow::Result<()> {
    let exe = std::env::current_exe()
        .map_err(|e| anyhow::anyhow!("cannot find wharf's own binary to start the proxy: {e}"))?;
    let log_path = state_dir.join("proxy.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", log_path.display()))?;
    let err = log.try_clone()?;
    let mut command = std::process::Command::new(exe);
    command
        .arg("proxy")
        .arg("--state-dir")
        .arg(state_dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err);
    // Its own process group: a Ctrl-C or a signal to the daemon's group
    // leaves routed traffic alone.
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let child = command
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start the route proxy: {e}"))?;
    let pid = child.id();
    // Not waited for: it is meant to outlive us. A thread reaps it should
    // it exit while we run, so it never lingers as a zombie.
    std::thread::spawn(move || {
        let mut child = child;
        let _ = child.wait();
    });
    let deadline = tokio::time::Instant::now() + START_LIMIT;
    loop {
        if UnixStream::connect(socket).await.is_ok() {
            info!(pid, log = %log_path.display(), "started the route proxy");
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!(
                "the route proxy started (pid {pid}) but does not answer on {}; see {}",
                socket.display(),
                log_path.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
