//! Load through a route while it is redeployed: two loops of requests
//! (fresh connections, and one kept-alive connection) at about 50 req/s,
//! every answer recorded; and a guard for the route proxy that a daemon
//! started (it outlives the daemon by design).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Each of the two load loops sends one request per period: ~50 req/s.
const PERIOD: Duration = Duration::from_millis(40);

/// One request of the load: when it started, and what it got.
#[derive(Debug, Clone)]
pub struct Sample {
    pub started: Instant,
    pub kept_alive: bool,
    pub answer: Result<(u16, String), String>,
}

/// Two loops of requests through the route until stopped: one opens a
/// fresh connection per request, the other keeps one connection alive.
pub struct Load {
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub fn start(port: u16) -> Load {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let url = format!("http://127.0.0.1:{port}/");
        let mut tasks = Vec::new();
        for kept_alive in [false, true] {
            let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(10));
            builder = if kept_alive {
                builder.pool_max_idle_per_host(1)
            } else {
                builder.pool_max_idle_per_host(0)
            };
            let client = builder.build().unwrap();
            let (samples, stop, url) = (samples.clone(), stop.clone(), url.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    let started = Instant::now();
                    let answer = match client.get(&url).send().await {
                        Ok(response) => {
                            let status = response.status().as_u16();
                            match response.text().await {
                                Ok(body) => Ok((status, body.trim().to_string())),
                                Err(e) => Err(format!("body: {e}")),
                            }
                        }
                        Err(e) => Err(format!("{e:?}")),
                    };
                    samples.lock().unwrap().push(Sample {
                        started,
                        kept_alive,
                        answer,
                    });
                    tokio::time::sleep(PERIOD.saturating_sub(started.elapsed())).await;
                }
            }));
        }
        Load {
            samples,
            stop,
            tasks,
        }
    }

    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().unwrap().clone()
    }

    /// Every request that did not get a 200 (or no answer at all).
    pub fn failures(&self) -> Vec<Sample> {
        self.samples()
            .into_iter()
            .filter(|s| !matches!(&s.answer, Ok((200, _))))
            .collect()
    }

    /// Versions answered by requests that started after `since`.
    pub fn versions_since(&self, since: Instant) -> Vec<String> {
        let mut versions: Vec<String> = self
            .samples()
            .into_iter()
            .filter(|s| s.started > since)
            .filter_map(|s| s.answer.ok().map(|(_, body)| body))
            .collect();
        versions.dedup();
        versions
    }

    pub async fn stop(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::SeqCst);
        for task in self.tasks {
            task.await.unwrap();
        }
        self.samples.lock().unwrap().clone()
    }
}

/// Stops the proxy the daemon started (it outlives the daemon by design).
pub struct ProxyGuard {
    pub pid_file: std::path::PathBuf,
}

impl ProxyGuard {
    pub fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(&self.pid_file)
            .ok()
            .and_then(|p| p.trim().parse().ok())
    }
}

impl Drop for ProxyGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            let _ = std::process::Command::new("kill")
                .arg(pid.to_string())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

/// Whether `pid` has exited (a zombie counts: whoever adopted the proxy
/// when its daemon died may reap it late).
pub fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

/// Panics with the first failures when any request of `load` failed.
pub fn assert_no_failures(load: &Load, during: &str) {
    let failures = load.failures();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed {during}: {:?}",
        failures.len(),
        load.samples().len(),
        &failures[..failures.len().min(5)]
    );
}
