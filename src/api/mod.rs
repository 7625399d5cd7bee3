//! The HTTP API (Rocket): one function builds the app, each area mounts its
//! own routes through a `stage()` fairing.
//!
//! Rocket's own request logging is switched off: it prints request URIs, and
//! the webhook URI holds the secret. [`RequestLog`] logs every request instead,
//! with the webhook path redacted.

pub mod admin;
pub mod error;
pub mod health;
pub mod webhook;

use std::borrow::Cow;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use arc_swap::ArcSwap;
use rocket::fairing::{AdHoc, Fairing, Info, Kind};
use rocket::figment::Figment;
use rocket::http::{ContentType, Status};
use rocket::request::{FromRequest, Outcome};
use rocket::shield::{NoSniff, Shield};
use rocket::{catch, catchers, Build, Data, Request, Response, Rocket};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tracing::info;

use crate::config::settings::Secrets;
use crate::config::DaemonConfig;
use crate::deploy::engine::Engine;
use crate::metrics::Metrics;

/// What every route may use, managed by Rocket.
pub struct App {
    pub config: Arc<DaemonConfig>,
    pub secrets: Arc<ArcSwap<Secrets>>,
    digests: ArcSwap<SecretDigests>,
    pub engine: Arc<Engine>,
    pub metrics: Arc<Metrics>,
    /// Each polled stage's `poll_error`.
    pub polls: Arc<crate::poll::status::PollStatus>,
    /// The route proxy's control socket (listing never starts a proxy).
    pub routes: crate::proxy::client::ProxyClient,
    /// The address actually bound (port 0 resolved), set at liftoff.
    pub bound: OnceLock<SocketAddr>,
}

/// The SHA-256 of each secret in force, computed once per version of
/// `settings.toml` rather than once per request.
struct SecretDigests {
    /// The version these were computed from (compared by pointer).
    of: Arc<Secrets>,
    webhook_secret: [u8; 32],
    admin_token: [u8; 32],
    metrics_token: Option<[u8; 32]>,
}

impl SecretDigests {
    fn of(secrets: Arc<Secrets>) -> SecretDigests {
        SecretDigests {
            webhook_secret: digest(&secrets.webhook_secret),
            admin_token: digest(&secrets.admin_token),
            metrics_token: secrets.metrics_token.as_deref().map(digest),
            of: secrets,
        }
    }
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Constant-time comparison of a presented secret with an expected one
/// through their hashes, so neither content nor length leaks through
/// timing.
fn same_secret(presented: &str, expected: &[u8; 32]) -> bool {
    digest(presented).ct_eq(expected).into()
}

impl App {
    pub fn new(
        config: Arc<DaemonConfig>,
        secrets: Arc<ArcSwap<Secrets>>,
        engine: Arc<Engine>,
        metrics: Arc<Metrics>,
        polls: Arc<crate::poll::status::PollStatus>,
        routes: crate::proxy::client::ProxyClient,
    ) -> App {
        let digests = ArcSwap::from_pointee(SecretDigests::of(secrets.load_full()));
        App {
            config,
            secrets,
            digests,
            engine,
            metrics,
            polls,
            routes,
            bound: OnceLock::new(),
        }
    }

    /// The digests of the secrets in force now; recomputed (once) after
    /// `settings.toml` changed.
    fn digests(&self) -> Arc<SecretDigests> {
        let secrets = self.secrets.load();
        let digests = self.digests.load_full();
        if Arc::ptr_eq(&digests.of, &secrets) {
            return digests;
        }
        let fresh = Arc::new(SecretDigests::of(Arc::clone(&secrets)));
        self.digests.store(Arc::clone(&fresh));
        fresh
    }

    pub fn webhook_secret_matches(&self, presented: &str) -> bool {
        same_secret(presented, &self.digests().webhook_secret)
    }

    pub fn admin_token_matches(&self, presented: &str) -> bool {
        same_secret(presented, &self.digests().admin_token)
    }

    pub fn metrics_token_matches(&self, presented: &str) -> bool {
        self.digests()
            .metrics_token
            .is_some_and(|expected| same_secret(presented, &expected))
    }

    pub fn bound(&self) -> SocketAddr {
        self.bound.get().copied().unwrap_or(self.config.listen)
    }

    pub fn webhook_url(&self, secret: &str) -> String {
        self.config.webhook_url(self.bound(), secret)
    }
}

/// Rocket's settings, derived from wharf's: only what wharf decides, none of
/// Rocket's own config files or `ROCKET_*` variables.
pub fn rocket_figment(config: &DaemonConfig) -> Figment {
    Figment::from(rocket::Config::default())
        .merge(("address", config.listen.ip()))
        .merge(("port", config.listen.port()))
        .merge(("log_level", rocket::config::LogLevel::Off))
        .merge(("cli_colors", false))
        .merge(("ident", "wharf"))
        // SIGHUP is wharf's reload signal, not a reason to stop.
        .merge(("shutdown.signals", ["term"]))
        .merge(("shutdown.ctrlc", true))
        .merge(("shutdown.grace", 2))
        .merge(("shutdown.mercy", 3))
}

/// Build the whole app.
pub fn build(app: App, figment: Figment) -> Rocket<Build> {
    rocket::custom(figment)
        // Rocket's default Shield adds three headers to every answer; of
        // them only `nosniff` means anything for a JSON API (the
        // dashboard's pages set their own, stricter ones), and each header
        // costs a few percent of a 404.
        .attach(Shield::new().enable(NoSniff::default()))
        .manage(app)
        .attach(RequestLog::default())
        .attach(AdHoc::on_liftoff("wharf liftoff", |rocket| {
            Box::pin(async move {
                let Some(app) = rocket.state::<App>() else {
                    tracing::error!("the app state is missing at liftoff");
                    return;
                };
                let bound = SocketAddr::new(rocket.config().address, rocket.config().port);
                let _ = app.bound.set(bound);
                info!(address = %bound, "wharf is listening");
                announce_webhook_url(&app.webhook_url(&app.secrets.load().webhook_secret));
                // Stop taking webhooks the moment shutdown starts: pushes
                // then get 503 and stay with the sender to retry.
                let shutdown = rocket.shutdown();
                let engine = app.engine.clone();
                tokio::spawn(async move {
                    shutdown.await;
                    engine.stop_accepting();
                });
            })
        }))
        .register("/", catchers![json_catcher])
        .attach(webhook::stage())
        .attach(admin::stage())
        .attach(health::stage())
        .attach(crate::dashboard::stage())
}

/// Every error status gets a small JSON body. For 404 this is the one body
/// every unknown path gets, which a wrong webhook secret must be identical to.
#[catch(default)]
fn json_catcher(
    status: Status,
    _request: &Request<'_>,
) -> (Status, (ContentType, Cow<'static, str>)) {
    (status, (ContentType::JSON, error_body(status)))
}

/// `{"error": "<reason, lower case>"}`; the statuses a scanner or a
/// misconfigured sender brings in bursts are written out, not built.
fn error_body(status: Status) -> Cow<'static, str> {
    match status.code {
        400 => Cow::Borrowed(r#"{"error":"bad request"}"#),
        401 => Cow::Borrowed(r#"{"error":"unauthorized"}"#),
        404 => Cow::Borrowed(r#"{"error":"not found"}"#),
        405 => Cow::Borrowed(r#"{"error":"method not allowed"}"#),
        422 => Cow::Borrowed(r#"{"error":"unprocessable entity"}"#),
        _ => {
            let reason = status.reason_lossy().to_lowercase();
            Cow::Owned(serde_json::json!({ "error": reason }).to_string())
        }
    }
}

/// Logs each request: method, route (see [`loggable_path`]), status, time.
/// Headers and bodies are never logged.
#[derive(Default)]
pub struct RequestLog {
    /// The first segments of the mounted routes, read once.
    known: OnceLock<Vec<String>>,
}

#[derive(Clone, Copy)]
struct StartedAt(Instant);

/// The path as it may be logged: the matched route's template
/// (`/api/webhook/<secret>`, `/api/admin/deployments/<id>`), never the raw
/// path, so no spelling that still routes (`//api/webhook/…`,
/// `/%61pi/webhook/…`) can put a secret in the log. An unmatched request
/// keeps its first segment only when that segment is one of wharf's own
/// (`/api/…`), since anything else may be a secret sent to the wrong place.
pub fn loggable_path<'a>(
    route: Option<&'a rocket::Route>,
    raw: &str,
    known: &[String],
) -> Cow<'a, str> {
    if let Some(route) = route {
        return Cow::Borrowed(route.uri.path());
    }
    let first = raw.trim_start_matches('/').split('/').next().unwrap_or("");
    if first.is_empty() && raw.trim_start_matches('/').is_empty() {
        Cow::Borrowed("/")
    } else if known.iter().any(|k| k == first) {
        Cow::Owned(format!("/{first}/…"))
    } else {
        Cow::Borrowed("/…")
    }
}

/// The first segments of wharf's own routes, fixed at ignition.
fn first_segments(rocket: &Rocket<rocket::Orbit>) -> Vec<String> {
    let mut segments: Vec<String> = rocket
        .routes()
        .filter_map(|route| {
            let path = route.uri.path().trim_start_matches('/');
            let first = path.split('/').next()?;
            (!first.is_empty() && !first.starts_with('<')).then(|| first.to_string())
        })
        .collect();
    segments.sort();
    segments.dedup();
    segments
}

#[rocket::async_trait]
impl Fairing for RequestLog {
    fn info(&self) -> Info {
        Info {
            name: "request log",
            kind: Kind::Request | Kind::Response,
        }
    }

    async fn on_request(&self, request: &mut Request<'_>, _: &mut Data<'_>) {
        request.local_cache(|| StartedAt(Instant::now()));
    }

    async fn on_response<'r>(&self, request: &'r Request<'_>, response: &mut Response<'r>) {
        let started = request.local_cache(|| StartedAt(Instant::now()));
        let known = self.known.get_or_init(|| first_segments(request.rocket()));
        info!(
            method = %request.method(),
            path = &*loggable_path(request.route(), request.uri().path().as_str(), known),
            status = response.status().code,
            ms = format!("{:.1}", started.0.elapsed().as_secs_f64() * 1000.0),
            "request"
        );
    }
}

/// The request's headers, for payload detection and signature checks;
/// borrowed, so a request refused before they are needed (a wrong secret)
/// copies none of them.
pub struct RequestHeaders<'r>(&'r rocket::http::HeaderMap<'r>);

impl RequestHeaders<'_> {
    /// The first value of header `name` (any case).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get_one(name)
    }

    /// Every header as borrowed `(name, value)` pairs.
    pub fn all(&self) -> Vec<rocket::http::Header<'_>> {
        self.0.iter().collect()
    }
}

/// `(name, value)` pairs of [`RequestHeaders::all`].
pub fn header_pairs<'a>(headers: &'a [rocket::http::Header<'_>]) -> Vec<(&'a str, &'a str)> {
    headers
        .iter()
        .map(|h| (h.name.as_str(), h.value.as_ref()))
        .collect()
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for RequestHeaders<'r> {
    type Error = std::convert::Infallible;

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        Outcome::Success(RequestHeaders(request.headers()))
    }
}

/// Shown once at start: the full URL on an interactive terminal (a newcomer
/// needs it), never in the log stream (where it would leak the secret).
fn announce_webhook_url(url: &str) {
    if std::io::stdout().is_terminal() {
        println!("wharf webhook URL: {url}");
    } else {
        info!("webhook URL: /api/webhook/<redacted> (run `wharf url` to print it)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unmatched_paths_keep_only_a_known_first_segment() {
        let known = ["api", "healthz", "metrics"].map(String::from);
        let secret = "d8f2a1e9-3c4b-4f7a-9e21-5b6c7d8e9f00";
        for (raw, logged) in [
            (format!("/api/webhooks/{secret}"), "/api/…"),
            (format!("/API/webhook/{secret}"), "/…"),
            (format!("/{secret}"), "/…"),
            (format!("//{secret}/api"), "/…"),
            ("/".to_string(), "/"),
        ] {
            assert_eq!(loggable_path(None, &raw, &known), logged, "{raw}");
        }
    }

    #[test]
    fn written_out_error_bodies_are_what_serde_would_build() {
        for code in [400, 401, 404, 405, 422, 500, 503] {
            let status = Status::from_code(code).unwrap();
            let built = serde_json::json!({ "error": status.reason_lossy().to_lowercase() });
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(&error_body(status)).unwrap(),
                built
            );
            assert_eq!(error_body(status), built.to_string(), "{code}");
        }
    }

    #[test]
    fn secrets_compare_by_content() {
        assert!(same_secret("abc", &digest("abc")));
        assert!(!same_secret("abc", &digest("abd")));
        assert!(!same_secret("", &digest("abc")));
    }
}
