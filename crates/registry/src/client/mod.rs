//! A registry client for polling: the tags of a repository (`tags/list`,
//! every page) and the digest a tag points to (manifest `HEAD`), over the
//! distribution API (OCI distribution spec, Docker registry API v2).
//!
//! Logins follow the registry's `401` challenge: basic auth (distribution
//! with htpasswd) or the Bearer token flow of Docker Hub, GHCR and Harbor,
//! with the credentials the caller passes — the Docker config's, through
//! [`crate::auth`], the same code the docker deployer pulls with. Tokens are
//! cached per repository until they expire.
//!
//! Plain `http://` is used only for loopback registries and the hosts the
//! caller lists as insecure ([`plain_http_allowed`]); every other registry,
//! token realm and redirect is HTTPS. Every answer is read with a size limit
//! and every request with a timeout, so a broken or hostile registry costs a
//! poll an error, never the daemon its memory.
//!
//! Why reqwest and not `oci-client`: a poller needs the `Retry-After` of a
//! `429` (oci-client maps statuses to errors without response headers),
//! bounded answers (it reads bodies whole), every page of `tags/list` (it
//! returns one page and leaves `Link` to the caller) and Docker's
//! `identitytoken` (no refresh-token grant). The three requests a poll makes
//! are small enough to write against the spec on the reqwest (rustls, ring)
//! the daemon already builds.

mod error;
mod headers;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{HeaderMap, ACCEPT, AUTHORIZATION, LINK, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode, Url};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

pub use error::RegistryError;
use headers::{BearerChallenge, Challenge};

use crate::auth::Credentials;
use crate::reference::{self, ImageRef, ReferenceError};

/// The manifest media types a digest `HEAD` accepts: a single-platform
/// image (Docker v2, OCI) or a multi-platform list (Docker manifest list,
/// OCI index). The digest of the list is what a tag points to; asking for
/// only one kind would make some registries convert, and the digest change.
pub const MANIFEST_MEDIA_TYPES: [&str; 4] = [
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
];

/// A page of `tags/list`: 4 MiB is some 60 000 tags of 64 characters.
const TAGS_PAGE_LIMIT: usize = 4 << 20;
/// The distribution registry refuses manifests over 4 MiB itself.
const MANIFEST_LIMIT: usize = 4 << 20;
/// A token answer (GCR's tokens run to a few kilobytes).
const TOKEN_LIMIT: usize = 1 << 20;
/// An error body, read only for its message.
const ERROR_BODY_LIMIT: usize = 64 << 10;
/// At most this many pages or tags per listing: a registry whose `Link`
/// never ends must not keep a poll running forever.
const MAX_PAGES: usize = 1000;
const MAX_TAGS: usize = 100_000;
/// The token lifetime the token spec assumes when `expires_in` is absent.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// A token is renewed this long before it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(10);
const MAX_REDIRECTS: usize = 5;
/// Docker Hub's API host: `docker.io` names it in references only.
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// How the client reaches registries.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Registries reached over plain `http://` although they are not
    /// loopback: `host:port` (that port only) or `host` (any port), as image
    /// names spell them.
    pub insecure_registries: Vec<String>,
    /// The whole of one request, answer included.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// `n` of `tags/list`; `None` leaves the page size to the registry
    /// (every page is read either way).
    pub page_size: Option<u32>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            insecure_registries: Vec::new(),
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            page_size: None,
        }
    }
}

/// A repository on a registry: `registry` as image names spell it
/// (`docker.io`, `ghcr.io`, `127.0.0.1:5000`), `path` without tag
/// (`library/nginx`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Repository {
    pub registry: String,
    pub path: String,
}

impl Repository {
    /// The repository of an image name, by Docker's rules (`nginx` is
    /// `docker.io` + `library/nginx`); a tag or digest in it is ignored.
    ///
    /// # Errors
    /// `image` is not a valid image reference.
    pub fn parse(image: &str) -> Result<Repository, ReferenceError> {
        let parsed = ImageRef::parse(image)?;
        Ok(Repository {
            registry: parsed.domain,
            path: parsed.path,
        })
    }

    /// The host the registry API answers on.
    pub fn api_host(&self) -> &str {
        if self.registry == reference::DEFAULT_DOMAIN {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }
}

impl std::fmt::Display for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.registry, self.path)
    }
}

/// True when plain `http://` may be used for `domain` (`host` or
/// `host:port`): a loopback address or `localhost`, or a host listed in
/// `insecure`. An entry without a port allows every port of its host.
pub fn plain_http_allowed(domain: &str, insecure: &[String]) -> bool {
    let (host, port) = split_port(domain);
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    loopback
        || insecure.iter().any(|entry| {
            let (entry_host, entry_port) = split_port(entry.trim());
            entry_host.eq_ignore_ascii_case(host) && (entry_port.is_none() || entry_port == port)
        })
}

/// `[::1]:5000` → (`::1`, `5000`); `a.example` → (`a.example`, none).
fn split_port(domain: &str) -> (&str, Option<&str>) {
    if let Some(bracketed) = domain.strip_prefix('[') {
        return match bracketed.split_once(']') {
            Some((host, rest)) => (host, rest.strip_prefix(':')),
            None => (bracketed, None),
        };
    }
    match domain.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (domain, None),
    }
}

/// `host[:port]` of a URL, as [`plain_http_allowed`] takes it.
fn domain_of(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

/// The login that last worked for a repository.
#[derive(Clone)]
struct Cached {
    /// The value of the `Authorization` header.
    authorization: String,
    /// When a token stops being valid; basic auth does not expire.
    expires: Option<Instant>,
    /// The challenge a token came from, to renew it without a `401` first.
    challenge: Option<BearerChallenge>,
    /// The credentials it was made with: other credentials, another login.
    credentials: Option<Credentials>,
}

/// A registry client; cheap to share (`Arc`), one per daemon.
pub struct Client {
    /// Built on the first request: a daemon that polls nothing never sets
    /// up TLS (rustls and its ~150 trust roots, paged in and parsed for
    /// nothing).
    http: OnceLock<Result<reqwest::Client, String>>,
    connect_timeout: Duration,
    insecure: Arc<[String]>,
    timeout: Duration,
    page_size: Option<u32>,
    logins: Mutex<HashMap<Repository, Cached>>,
}

impl Client {
    pub fn new(config: ClientConfig) -> Client {
        Client {
            http: OnceLock::new(),
            connect_timeout: config.connect_timeout,
            insecure: config.insecure_registries.into(),
            timeout: config.timeout,
            page_size: config.page_size,
            logins: Mutex::new(HashMap::new()),
        }
    }

    /// The HTTP client, built the first time it is needed.
    ///
    /// # Errors
    /// [`RegistryError::Setup`]: the TLS backend failed to start (it fails
    /// the same way every time, so the failure is kept).
    fn http(&self) -> Result<&reqwest::Client, RegistryError> {
        self.http
            .get_or_init(|| self.build_http())
            .as_ref()
            .map_err(|why| RegistryError::Setup { why: why.clone() })
    }

    fn build_http(&self) -> Result<reqwest::Client, String> {
        let for_redirects = Arc::clone(&self.insecure);
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                return attempt.error("too many redirects");
            }
            let url = attempt.url();
            if url.scheme() != "https" && !plain_http_allowed(&domain_of(url), &for_redirects) {
                let refused = format!("refusing a redirect to plain HTTP ({})", domain_of(url));
                return attempt.error(refused);
            }
            attempt.follow()
        });
        reqwest::Client::builder()
            .user_agent(concat!("wharf/", env!("CARGO_PKG_VERSION")))
            .timeout(self.timeout)
            .connect_timeout(self.connect_timeout)
            .redirect(redirects)
            .build()
            .map_err(|e| error_chain(&e))
    }

    /// Every tag of `repository`, in the registry's order, following
    /// `Link: <…>; rel="next"` page after page. Tags that break the tag
    /// grammar are left out.
    ///
    /// # Errors
    /// Any [`RegistryError`]: unreachable, refused, rate-limited, not found,
    /// an answer too large or malformed, more than 1000 pages or 100 000 tags.
    pub async fn tags(
        &self,
        repository: &Repository,
        credentials: Option<&Credentials>,
    ) -> Result<Vec<String>, RegistryError> {
        let host = repository.api_host();
        let mut url = self.url(repository, &format!("/v2/{}/tags/list", repository.path))?;
        if let Some(n) = self.page_size {
            url.query_pairs_mut().append_pair("n", &n.to_string());
        }
        let what = format!("the tags of {}", repository.path);
        let mut tags = Vec::new();
        for _ in 0..MAX_PAGES {
            let response = self
                .send(repository, credentials, Method::GET, &url, None)
                .await?;
            let response = self.check(response, repository, credentials, &what).await?;
            let next = header(response.headers(), LINK.as_str())
                .and_then(headers::next_link)
                .map(str::to_owned);
            let body = read_limited(response, TAGS_PAGE_LIMIT, host, "a tag list page").await?;
            let page: TagList =
                serde_json::from_slice(&body).map_err(|e| RegistryError::Malformed {
                    host: host.to_string(),
                    what: "tag list".into(),
                    why: e.to_string(),
                })?;
            tags.extend(
                page.tags
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|tag| reference::is_valid_tag(tag)),
            );
            if tags.len() > MAX_TAGS {
                return Err(RegistryError::TooLarge {
                    host: host.to_string(),
                    what: "tags".into(),
                    limit: MAX_TAGS,
                });
            }
            let Some(next) = next else {
                return Ok(tags);
            };
            url = self.next_page(&url, &next, host)?;
        }
        Err(RegistryError::TooLarge {
            host: host.to_string(),
            what: "pages of tags".into(),
            limit: MAX_PAGES,
        })
    }

    /// The digest `tag` points to now (`sha256:…`), from a manifest `HEAD`
    /// (`Docker-Content-Digest`); from a `GET` and the manifest's own
    /// SHA-256 when a registry answers `HEAD` without the header.
    ///
    /// # Errors
    /// `tag` is not a valid tag, or any [`RegistryError`] of the requests.
    pub async fn digest(
        &self,
        repository: &Repository,
        tag: &str,
        credentials: Option<&Credentials>,
    ) -> Result<String, RegistryError> {
        reference::validate_tag(tag)?;
        let host = repository.api_host();
        let url = self.url(
            repository,
            &format!("/v2/{}/manifests/{tag}", repository.path),
        )?;
        let what = format!("the tag {}:{tag}", repository.path);
        let accept = MANIFEST_MEDIA_TYPES.join(", ");
        let response = self
            .send(repository, credentials, Method::HEAD, &url, Some(&accept))
            .await?;
        let response = self.check(response, repository, credentials, &what).await?;
        if let Some(digest) = content_digest(response.headers()) {
            return Ok(digest);
        }
        let response = self
            .send(repository, credentials, Method::GET, &url, Some(&accept))
            .await?;
        let response = self.check(response, repository, credentials, &what).await?;
        if let Some(digest) = content_digest(response.headers()) {
            return Ok(digest);
        }
        let manifest = read_limited(response, MANIFEST_LIMIT, host, "a manifest").await?;
        let hex: String = Sha256::digest(&manifest)
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        Ok(format!("sha256:{hex}"))
    }

    /// `path` on the repository's registry: `http://` when allowed, else
    /// `https://`.
    fn url(&self, repository: &Repository, path: &str) -> Result<Url, RegistryError> {
        let host = repository.api_host();
        let scheme = if plain_http_allowed(host, &self.insecure) {
            "http"
        } else {
            "https"
        };
        Url::parse(&format!("{scheme}://{host}{path}")).map_err(|e| RegistryError::Malformed {
            host: host.to_string(),
            what: "registry URL".into(),
            why: e.to_string(),
        })
    }

    /// The URL a `Link` names, resolved against the page it came with; only
    /// on the same registry (the credentials go with it).
    fn next_page(&self, current: &Url, link: &str, host: &str) -> Result<Url, RegistryError> {
        let malformed = |why: String| RegistryError::Malformed {
            host: host.to_string(),
            what: "Link header".into(),
            why,
        };
        let next = current.join(link).map_err(|e| malformed(e.to_string()))?;
        if next.origin() != current.origin() {
            return Err(malformed(format!(
                "the next page is on another host ({})",
                domain_of(&next)
            )));
        }
        Ok(next)
    }

    /// Send a request with the repository's cached login; on a `401`, log
    /// in as its challenge asks and send it once more.
    async fn send(
        &self,
        repository: &Repository,
        credentials: Option<&Credentials>,
        method: Method,
        url: &Url,
        accept: Option<&str>,
    ) -> Result<Response, RegistryError> {
        let mut authorization = self.cached_login(repository, credentials).await?;
        let mut retried = false;
        loop {
            let mut request = self.http()?.request(method.clone(), url.clone());
            if let Some(accept) = accept {
                request = request.header(ACCEPT, accept);
            }
            if let Some(authorization) = &authorization {
                request = request.header(AUTHORIZATION, authorization);
            }
            let response = request
                .send()
                .await
                .map_err(|e| self.transport(repository.api_host(), e))?;
            if response.status() != StatusCode::UNAUTHORIZED || retried {
                return Ok(response);
            }
            let challenge =
                header(response.headers(), WWW_AUTHENTICATE.as_str()).and_then(headers::challenge);
            authorization = Some(self.log_in(repository, credentials, challenge).await?);
            retried = true;
        }
    }

    /// The `Authorization` that worked last for `repository` with these
    /// credentials, renewed first when it was a token that has expired.
    async fn cached_login(
        &self,
        repository: &Repository,
        credentials: Option<&Credentials>,
    ) -> Result<Option<String>, RegistryError> {
        let cached = self
            .logins
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(repository)
            .filter(|cached| cached.credentials.as_ref() == credentials)
            .cloned();
        let Some(cached) = cached else {
            return Ok(None);
        };
        if cached.expires.is_none_or(|at| Instant::now() < at) {
            return Ok(Some(cached.authorization));
        }
        match cached.challenge {
            Some(challenge) => self
                .log_in(repository, credentials, Some(Challenge::Bearer(challenge)))
                .await
                .map(Some),
            None => Ok(None),
        }
    }

    /// Answer a challenge: the `Authorization` to send, remembered for the
    /// repository.
    async fn log_in(
        &self,
        repository: &Repository,
        credentials: Option<&Credentials>,
        challenge: Option<Challenge>,
    ) -> Result<String, RegistryError> {
        let refused = |why: String| RegistryError::Unauthorized {
            host: repository.api_host().to_string(),
            repository: repository.path.clone(),
            why,
        };
        let cached = match challenge {
            None => {
                return Err(refused(
                    "it answered 401 without a usable WWW-Authenticate challenge".into(),
                ))
            }
            Some(Challenge::Other(scheme)) => {
                return Err(refused(format!(
                    "it asks for {scheme} authentication, which wharf does not speak"
                )))
            }
            Some(Challenge::Basic) => {
                let Some(username) = credentials.and_then(|c| c.username.as_deref()) else {
                    return Err(refused(no_credentials(repository)));
                };
                let password = credentials
                    .and_then(|c| c.password.as_deref())
                    .unwrap_or_default();
                use base64::Engine as _;
                let encoded = base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{password}"));
                Cached {
                    authorization: format!("Basic {encoded}"),
                    expires: None,
                    challenge: None,
                    credentials: credentials.cloned(),
                }
            }
            Some(Challenge::Bearer(challenge)) => {
                let (token, lifetime) = self.token(repository, credentials, &challenge).await?;
                Cached {
                    authorization: format!("Bearer {token}"),
                    expires: Some(Instant::now() + lifetime.saturating_sub(TOKEN_MARGIN)),
                    challenge: Some(challenge),
                    credentials: credentials.cloned(),
                }
            }
        };
        let authorization = cached.authorization.clone();
        self.logins
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(repository.clone(), cached);
        Ok(authorization)
    }

    /// A pull token from the challenge's realm: with an `identitytoken`, the
    /// OAuth2 refresh-token grant (`POST`, as `docker login` stores for
    /// Azure and Harbor OIDC); otherwise a `GET` with basic auth, or
    /// anonymous (public images on Docker Hub and GHCR still need a token).
    async fn token(
        &self,
        repository: &Repository,
        credentials: Option<&Credentials>,
        challenge: &BearerChallenge,
    ) -> Result<(String, Duration), RegistryError> {
        let realm = &challenge.realm;
        let failed = |why: String| RegistryError::Token {
            realm: realm.clone(),
            why,
        };
        let url = Url::parse(realm).map_err(|e| failed(format!("not a URL: {e}")))?;
        match url.scheme() {
            "https" => {}
            "http" if plain_http_allowed(&domain_of(&url), &self.insecure) => {}
            "http" => {
                return Err(RegistryError::InsecureRefused {
                    host: domain_of(&url),
                })
            }
            other => return Err(failed(format!("unsupported scheme {other}"))),
        }
        let scope = challenge
            .scope
            .clone()
            .unwrap_or_else(|| format!("repository:{}:pull", repository.path));
        let service = challenge.service.clone().unwrap_or_default();
        let refresh = credentials.and_then(|c| c.identity_token.as_deref());
        let request = match refresh {
            Some(refresh_token) => self.http()?.post(url.clone()).form(&[
                ("grant_type", "refresh_token"),
                ("client_id", "wharf"),
                ("service", service.as_str()),
                ("scope", scope.as_str()),
                ("refresh_token", refresh_token),
            ]),
            None => {
                let mut query = vec![("scope", scope.as_str())];
                if !service.is_empty() {
                    query.push(("service", service.as_str()));
                }
                let request = self.http()?.get(url.clone()).query(&query);
                match credentials.and_then(|c| c.username.as_deref()) {
                    Some(username) => request
                        .basic_auth(username, credentials.and_then(|c| c.password.as_deref())),
                    None => request,
                }
            }
        };
        let realm_host = domain_of(&url);
        let response = request
            .send()
            .await
            .map_err(|e| self.transport(&realm_host, e))?;
        let status = response.status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Err(rate_limited(&realm_host, response.headers()));
        }
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(RegistryError::Unauthorized {
                host: repository.api_host().to_string(),
                repository: repository.path.clone(),
                why: match credentials {
                    Some(_) => format!("its token server refused the credentials ({status})"),
                    None => format!(
                        "its token server wants a login ({status}); {}",
                        no_credentials(repository)
                    ),
                },
            });
        }
        if !status.is_success() {
            return Err(failed(format!("it answered {status}")));
        }
        let body = read_limited(response, TOKEN_LIMIT, &realm_host, "a token").await?;
        let answer: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|e| failed(format!("not a token answer: {e}")))?;
        let token = answer
            .token
            .filter(|t| !t.is_empty())
            .or(answer.access_token.filter(|t| !t.is_empty()))
            .ok_or_else(|| failed("the answer holds no token".into()))?;
        let lifetime = answer
            .expires_in
            .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs);
        Ok((token, lifetime))
    }

    /// A successful answer, or the error its status means.
    async fn check(
        &self,
        response: Response,
        repository: &Repository,
        credentials: Option<&Credentials>,
        what: &str,
    ) -> Result<Response, RegistryError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let host = repository.api_host().to_string();
        Err(match status {
            StatusCode::UNAUTHORIZED => RegistryError::Unauthorized {
                host,
                repository: repository.path.clone(),
                why: match credentials {
                    Some(_) => "it refused the credentials".into(),
                    None => no_credentials(repository),
                },
            },
            StatusCode::FORBIDDEN => RegistryError::Denied {
                host,
                repository: repository.path.clone(),
            },
            StatusCode::NOT_FOUND => RegistryError::NotFound {
                host,
                what: what.trim_start_matches("the ").to_string(),
            },
            StatusCode::TOO_MANY_REQUESTS => rate_limited(&host, response.headers()),
            _ => RegistryError::Status {
                status: status.as_u16(),
                what: what.to_string(),
                message: error_message(response).await,
                host,
            },
        })
    }

    /// A transport failure, by kind.
    fn transport(&self, host: &str, error: reqwest::Error) -> RegistryError {
        let host = host.to_string();
        if error.is_timeout() {
            RegistryError::Timeout {
                host,
                timeout: self.timeout,
            }
        } else {
            RegistryError::Unreachable {
                host,
                why: error_chain(&error.without_url()),
            }
        }
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("insecure", &self.insecure)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TagList {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorEntry>,
}

#[derive(Deserialize)]
struct ErrorEntry {
    #[serde(default)]
    message: String,
}

fn no_credentials(repository: &Repository) -> String {
    format!(
        "it wants a login and the Docker config has no credentials for {}",
        repository.registry
    )
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

fn content_digest(headers: &HeaderMap) -> Option<String> {
    header(headers, "docker-content-digest")
        .map(str::trim)
        .filter(|digest| reference::is_valid_digest(digest))
        .map(str::to_owned)
}

fn rate_limited(host: &str, headers: &HeaderMap) -> RegistryError {
    RegistryError::RateLimited {
        host: host.to_string(),
        retry_after: header(headers, RETRY_AFTER.as_str())
            .and_then(|value| headers::retry_after(value, SystemTime::now())),
    }
}

/// The first message of a distribution error body, at most 200 characters.
async fn error_message(response: Response) -> Option<String> {
    let host = domain_of(response.url());
    let body = read_limited(response, ERROR_BODY_LIMIT, &host, "an error")
        .await
        .ok()?;
    let parsed: ErrorBody = serde_json::from_slice(&body).ok()?;
    let message = parsed.errors.into_iter().next()?.message;
    let message: String = message
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    (!message.is_empty()).then_some(message)
}

/// The body of `response`, refused past `limit` bytes (by `Content-Length`
/// before reading, by count while reading).
async fn read_limited(
    mut response: Response,
    limit: usize,
    host: &str,
    what: &str,
) -> Result<Vec<u8>, RegistryError> {
    let too_large = || RegistryError::TooLarge {
        host: host.to_string(),
        what: format!("bytes of {what}"),
        limit,
    };
    if response
        .content_length()
        .is_some_and(|length| length > limit as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| RegistryError::Unreachable {
            host: host.to_string(),
            why: format!("reading {what}: {}", error_chain(&e.without_url())),
        })?
    {
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An error and its causes, `outer: inner: …` (reqwest's own message is
/// only the outermost, e.g. "error sending request").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests;
