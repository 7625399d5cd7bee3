//! The web dashboard at `/`: server-rendered pages, one small script and one
//! stylesheet, all embedded in the binary (no CDN, no build step).
//!
//! - [`session`]: in-memory sessions, CSRF tokens, the sign-in rate limit.
//! - [`pages`]: the HTML.
//! - [`assets`]: the script and stylesheet.
//! - [`events`]: `GET /api/admin/events`, the live feed (session or bearer).
//!
//! Sign-in trades the admin token for a random session id in an `HttpOnly`,
//! `SameSite=Strict` cookie; the token is never written into a page, a
//! readable cookie or web storage. Every state-changing request needs the
//! session's CSRF token in its form, and a matching `Origin` when the browser
//! sends one. Actions call the admin API's own functions.

pub mod assets;
pub mod events;
pub mod pages;
pub mod session;

use std::sync::Arc;

use rocket::fairing::{AdHoc, Fairing, Info, Kind};
use rocket::form::{Form, FromForm};
use rocket::http::{Cookie, CookieJar, Header, SameSite, Status};
use rocket::request::{FromRequest, Outcome};
use rocket::response::content::RawHtml;
use rocket::response::{Redirect, Responder};
use rocket::{get, post, routes, Request, Response, State};

use crate::api::admin::{
    approve_deployment, manual_deploy, reject_deployment, rollback_stage, rotate_secret,
};
use crate::api::error::ApiError;
use crate::api::App;
use crate::deploy::store::{now_ms, Query, Status as DeployStatus};
use pages::{Chrome, Filters, ProjectCard, StageRow};
use session::{Active, Sessions};

/// The session cookie's name.
pub const COOKIE: &str = "wharf_session";
/// Deployments per page of the list, and bars per stage picture.
const PAGE_SIZE: u32 = 25;
const HISTORY: u32 = 20;

/// The dashboard's own state.
#[derive(Default)]
pub struct Dashboard {
    pub sessions: Arc<Sessions>,
}

pub fn stage() -> AdHoc {
    AdHoc::on_ignite("dashboard", |rocket| async {
        rocket
            .manage(Dashboard::default())
            .attach(SecurityHeaders)
            .mount(
                "/",
                routes![
                    index,
                    login,
                    logout,
                    list,
                    one,
                    approve,
                    reject,
                    deploy,
                    rollback,
                    rotate_page,
                    rotate,
                    assets::script,
                    assets::style,
                    events::events,
                ],
            )
    })
}

/// Whether a path is one of the dashboard's (for the security headers).
fn is_dashboard_path(path: &str) -> bool {
    path == "/" || path.starts_with("/ui/") || path == "/api/admin/events"
}

/// Adds the security headers to every dashboard response: no framing, no
/// script or style but the dashboard's own files, no referrer (a page URL
/// could name a deployment), no content sniffing, and no caching of pages.
struct SecurityHeaders;

#[rocket::async_trait]
impl Fairing for SecurityHeaders {
    fn info(&self) -> Info {
        Info {
            name: "dashboard security headers",
            kind: Kind::Response,
        }
    }

    async fn on_response<'r>(&self, request: &'r Request<'_>, response: &mut Response<'r>) {
        let path = request.uri().path();
        if !is_dashboard_path(path.as_str()) {
            return;
        }
        response.set_header(Header::new(
            "Content-Security-Policy",
            "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ));
        response.set_header(Header::new("Referrer-Policy", "no-referrer"));
        response.set_header(Header::new("X-Content-Type-Options", "nosniff"));
        response.set_header(Header::new("X-Frame-Options", "DENY"));
        if !path.starts_with("/ui/assets/") {
            response.set_header(Header::new("Cache-Control", "no-store"));
        }
    }
}

/// The viewer's session, if the request carries a valid one.
pub struct Viewer(pub Option<Active>);

/// The valid session a cookie names, for the admin token now in force.
pub fn session_of(request: &Request<'_>) -> Option<Active> {
    let app = request.rocket().state::<App>()?;
    let dashboard = request.rocket().state::<Dashboard>()?;
    let id = request.cookies().get(COOKIE)?.value().to_string();
    dashboard
        .sessions
        .check(&id, &app.secrets.load().admin_token)
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Viewer {
    type Error = std::convert::Infallible;

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        Outcome::Success(Viewer(session_of(request)))
    }
}

/// Whether a request's `Origin` (when sent) is the dashboard's own: the
/// origin of the `Host` it was sent to, or of `public_url`. Browsers send
/// `Origin` on every cross-origin POST, so a forged form from another site
/// is refused here even before its (missing) CSRF token is looked at; and
/// `Sec-Fetch-Site`, which must not say another site. `Origin: null` passes
/// this check: the dashboard's own forms send it, because its pages are
/// served with `Referrer-Policy: no-referrer`; such a request still needs
/// the session's CSRF token.
pub fn same_origin(request: &Request<'_>, public_url: Option<&str>) -> bool {
    if matches!(
        request.headers().get_one("Sec-Fetch-Site"),
        Some("cross-site" | "same-site")
    ) {
        return false;
    }
    let Some(origin) = request.headers().get_one("Origin") else {
        return true;
    };
    if origin == "null" {
        return true;
    }
    let origin = origin.trim_end_matches('/');
    let host = request.headers().get_one("Host").unwrap_or("");
    let own = !host.is_empty()
        && (origin == format!("http://{host}") || origin == format!("https://{host}"));
    let public = public_url.is_some_and(|url| {
        let url = url.trim_end_matches('/');
        let base = url.splitn(4, '/').take(3).collect::<Vec<_>>().join("/");
        origin.eq_ignore_ascii_case(&base)
    });
    own || public
}

/// A request that may change something: it has a valid session and comes
/// from the dashboard's own origin. The CSRF token in the form is checked
/// by [`Changer::allows`].
pub struct Changer(Active);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Changer {
    type Error = &'static str;

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        let public_url = request
            .rocket()
            .state::<App>()
            .and_then(|app| app.config.public_url.clone());
        if !same_origin(request, public_url.as_deref()) {
            return Outcome::Error((Status::Forbidden, "cross-origin request refused"));
        }
        match session_of(request) {
            Some(active) => Outcome::Success(Changer(active)),
            None => Outcome::Error((Status::Unauthorized, "sign in first")),
        }
    }
}

impl Changer {
    fn allows(&self, csrf: &str) -> Result<(), Html> {
        if session::same(csrf, &self.0.csrf) {
            Ok(())
        } else {
            Err(Html::problem(
                Status::Forbidden,
                "This form is stale or did not come from this dashboard (CSRF token mismatch). Reload the page and try again.",
            ))
        }
    }
}

/// An HTML answer with a status.
pub struct Html(Status, String);

impl Html {
    fn ok(body: String) -> Html {
        Html(Status::Ok, body)
    }

    fn problem(status: Status, message: &str) -> Html {
        Html(status, pages::problem(message, true))
    }
}

impl From<ApiError> for Html {
    fn from(error: ApiError) -> Html {
        Html::problem(error.status(), &error.to_string())
    }
}

impl<'r> Responder<'r, 'static> for Html {
    fn respond_to(self, request: &'r Request<'_>) -> rocket::response::Result<'static> {
        (self.0, RawHtml(self.1)).respond_to(request)
    }
}

/// A signed-in page, or the way to the sign-in form. (One per request,
/// moved once: the size of `Redirect` does not matter here.)
#[allow(clippy::large_enum_variant)]
#[derive(Responder)]
pub enum Page {
    Html(Html),
    SignIn(Redirect),
}

impl From<Html> for Page {
    fn from(html: Html) -> Page {
        Page::Html(html)
    }
}

fn page(active: &Active, title: &str, main_attrs: &str, body: &str) -> Page {
    Page::Html(Html::ok(pages::layout(
        &Chrome {
            title,
            csrf: &active.csrf,
            main_attrs,
        },
        body,
    )))
}

/// The overview when signed in, else the sign-in form.
#[get("/")]
async fn index(viewer: Viewer, app: &State<App>) -> Result<Page, Html> {
    let Some(active) = viewer.0 else {
        return Ok(Page::Html(Html::ok(pages::sign_in(None))));
    };
    let catalog = app.engine.catalog();
    let keys: Vec<(String, String)> = catalog
        .projects()
        .flat_map(|p| p.stages.keys().map(|s| (p.name.clone(), s.clone())))
        .collect();
    let (recent, pending) = app
        .engine
        .store()
        .call(move |store| {
            let mut recent = Vec::with_capacity(keys.len());
            for (project, stage) in keys {
                let list = store.list(&Query {
                    project: Some(project.clone()),
                    stage: Some(stage.clone()),
                    status: None,
                    before_seq: None,
                    limit: HISTORY,
                })?;
                recent.push(((project, stage), list));
            }
            let pending = store.list(&Query {
                status: Some(DeployStatus::AwaitingApproval),
                limit: 100,
                ..Query::default()
            })?;
            Ok((recent, pending))
        })
        .await
        .map_err(ApiError::from)?;
    let cards: Vec<ProjectCard<'_>> = catalog
        .projects()
        .map(|p| ProjectCard {
            name: &p.name,
            image: &p.repository,
            source: p.source.display().to_string(),
            stages: p
                .stages
                .values()
                .map(|s| StageRow {
                    name: &s.name,
                    tags: &s.tags,
                    auto_deploy: s.auto_deploy,
                    deployer: &s.deployer,
                    // A docker stage's zero-downtime route: its stable address.
                    route: s
                        .settings
                        .get("route")
                        .and_then(|route| route.get("listen"))
                        .and_then(|listen| listen.as_str()),
                    recent: recent
                        .iter()
                        .find(|((pn, sn), _)| *pn == p.name && *sn == s.name)
                        .map(|(_, list)| list.clone())
                        .unwrap_or_default(),
                    poll: s.poll.map(|interval| {
                        (
                            wharf_plugin_api::duration::format(interval).to_string(),
                            app.polls.error(&p.name, &s.name),
                        )
                    }),
                })
                .collect(),
        })
        .collect();
    let errors: Vec<_> = catalog.errors().cloned().collect();
    let body = pages::overview(&cards, &errors, &pending, &active.csrf, now_ms());
    Ok(page(&active, "Projects", "", &body))
}

#[derive(FromForm)]
struct SignIn {
    token: String,
}

/// Trade the admin token for a session cookie. Failed tries are limited per
/// client address (the socket's, not a header a client could forge).
#[post("/ui/login", data = "<form>")]
async fn login(
    request_origin: OriginCheck,
    client: Client,
    form: Form<SignIn>,
    app: &State<App>,
    dashboard: &State<Dashboard>,
    cookies: &CookieJar<'_>,
) -> Result<Redirect, Html> {
    if !request_origin.0 {
        return Err(Html(
            Status::Forbidden,
            pages::sign_in(Some("Sign-in from another site is refused.")),
        ));
    }
    let sessions = &dashboard.sessions;
    if let Some(ip) = client.0 {
        if !sessions.may_try(ip) {
            tracing::warn!(client = %ip, "dashboard sign-in refused: too many failed tries");
            return Err(Html(
                Status::TooManyRequests,
                pages::sign_in(Some(
                    "Too many failed sign-ins from this address; wait a minute.",
                )),
            ));
        }
    }
    if !app.admin_token_matches(form.token.trim()) {
        if let Some(ip) = client.0 {
            sessions.failed(ip);
        }
        tracing::warn!(client = ?client.0, "dashboard sign-in with a wrong token");
        return Err(Html(
            Status::Unauthorized,
            pages::sign_in(Some("That is not the admin token.")),
        ));
    }
    let active = sessions.open(&app.secrets.load().admin_token);
    let secure = client.1
        || app
            .config
            .public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"));
    cookies.add(
        Cookie::build((COOKIE, active.id))
            .http_only(true)
            .same_site(SameSite::Strict)
            .path("/")
            .secure(secure),
    );
    tracing::info!(client = ?client.0, "dashboard session opened");
    Ok(Redirect::to("/"))
}

/// Whether the request's `Origin`, if any, is the dashboard's own.
struct OriginCheck(bool);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for OriginCheck {
    type Error = std::convert::Infallible;

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        let public_url = request
            .rocket()
            .state::<App>()
            .and_then(|app| app.config.public_url.clone());
        Outcome::Success(OriginCheck(same_origin(request, public_url.as_deref())))
    }
}

/// The client's socket address, and whether a proxy in front says the
/// request came over https (`X-Forwarded-Proto`), which only ever makes the
/// cookie stricter.
struct Client(Option<std::net::IpAddr>, bool);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Client {
    type Error = std::convert::Infallible;

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        let https = request
            .headers()
            .get_one("X-Forwarded-Proto")
            .is_some_and(|p| p.eq_ignore_ascii_case("https"));
        Outcome::Success(Client(request.remote().map(|a| a.ip()), https))
    }
}

#[derive(FromForm)]
struct CsrfOnly {
    csrf: String,
}

#[post("/ui/logout", data = "<form>")]
async fn logout(
    changer: Changer,
    form: Form<CsrfOnly>,
    dashboard: &State<Dashboard>,
    cookies: &CookieJar<'_>,
) -> Result<Redirect, Html> {
    changer.allows(&form.csrf)?;
    dashboard.sessions.end(&changer.0.id);
    cookies.remove(Cookie::build(COOKIE).path("/"));
    tracing::info!("dashboard session ended by sign-out");
    Ok(Redirect::to("/"))
}

/// The deployments list, filtered and paged.
#[get("/ui/deployments?<project>&<stage>&<status>&<before>")]
async fn list(
    viewer: Viewer,
    app: &State<App>,
    project: Option<String>,
    stage: Option<String>,
    status: Option<String>,
    before: Option<String>,
) -> Result<Page, Html> {
    let Some(active) = viewer.0 else {
        return Ok(Page::SignIn(Redirect::to("/")));
    };
    let filters = Filters {
        project: project.unwrap_or_default(),
        stage: stage.unwrap_or_default(),
        status: status.unwrap_or_default(),
    };
    let parsed = match filters.status.as_str() {
        "" => None,
        text => Some(DeployStatus::parse(text).ok_or_else(|| {
            Html::problem(Status::BadRequest, &format!("unknown status '{text}'"))
        })?),
    };
    let query = Query {
        project: Some(filters.project.clone()).filter(|p| !p.is_empty()),
        stage: Some(filters.stage.clone()).filter(|s| !s.is_empty()),
        status: parsed,
        before_seq: None,
        limit: PAGE_SIZE,
    };
    let page_rows = app
        .engine
        .store()
        .call(move |store| {
            let before_seq = match before.filter(|b| !b.is_empty()) {
                Some(id) => store.get(&id)?.map(|d| d.seq),
                None => None,
            };
            store.list(&Query {
                before_seq,
                ..query
            })
        })
        .await
        .map_err(ApiError::from)?;
    let older = (page_rows.len() == PAGE_SIZE as usize)
        .then(|| page_rows.last().map(|d| d.id.clone()))
        .flatten();
    let body = pages::deployments(
        &filters,
        &page_rows,
        older.as_deref(),
        &active.csrf,
        now_ms(),
    );
    Ok(page(&active, "Deployments", "", &body))
}

/// One deployment and its log; the page refreshes itself while it runs.
#[get("/ui/deployments/<id>")]
async fn one(viewer: Viewer, app: &State<App>, id: String) -> Result<Page, Html> {
    let Some(active) = viewer.0 else {
        return Ok(Page::SignIn(Redirect::to("/")));
    };
    let found = app
        .engine
        .store()
        .call(move |store| match store.get(&id)? {
            Some(d) => {
                let log = store.log(d.seq)?;
                Ok(Some((d, log)))
            }
            None => Ok(None),
        })
        .await
        .map_err(ApiError::from)?;
    let Some((d, log)) = found else {
        return Err(Html::problem(
            Status::NotFound,
            "No deployment with that id.",
        ));
    };
    let attrs = if d.status.is_final() {
        ""
    } else {
        " data-running=\"1\""
    };
    let body = pages::deployment(&d, &log, &active.csrf, now_ms());
    Ok(page(&active, "Deployment", attrs, &body))
}

fn to_deployment(id: &str) -> Redirect {
    Redirect::to(format!("/ui/deployments/{}", pages::url_part(id)))
}

#[post("/ui/deployments/<id>/approve", data = "<form>")]
async fn approve(
    changer: Changer,
    form: Form<CsrfOnly>,
    app: &State<App>,
    id: &str,
) -> Result<Redirect, Html> {
    changer.allows(&form.csrf)?;
    let d = approve_deployment(app, id).await?;
    tracing::info!(id = %d.id, "approved from the dashboard");
    Ok(to_deployment(&d.id))
}

#[post("/ui/deployments/<id>/reject", data = "<form>")]
async fn reject(
    changer: Changer,
    form: Form<CsrfOnly>,
    app: &State<App>,
    id: &str,
) -> Result<Redirect, Html> {
    changer.allows(&form.csrf)?;
    let d = reject_deployment(app, id).await?;
    tracing::info!(id = %d.id, "rejected from the dashboard");
    Ok(to_deployment(&d.id))
}

#[derive(FromForm)]
struct DeployForm {
    csrf: String,
    project: String,
    stage: String,
    tag: String,
}

#[post("/ui/deploy", data = "<form>")]
async fn deploy(
    changer: Changer,
    form: Form<DeployForm>,
    app: &State<App>,
) -> Result<Redirect, Html> {
    changer.allows(&form.csrf)?;
    let d = manual_deploy(app, &form.project, &form.stage, form.tag.trim()).await?;
    Ok(to_deployment(&d.id))
}

#[derive(FromForm)]
struct StageForm {
    csrf: String,
    project: String,
    stage: String,
}

#[post("/ui/rollback", data = "<form>")]
async fn rollback(
    changer: Changer,
    form: Form<StageForm>,
    app: &State<App>,
) -> Result<Redirect, Html> {
    changer.allows(&form.csrf)?;
    let d = rollback_stage(app, &form.project, &form.stage).await?;
    Ok(to_deployment(&d.id))
}

/// The confirmation step of a rotation.
#[get("/ui/rotate")]
fn rotate_page(viewer: Viewer) -> Page {
    match viewer.0 {
        Some(active) => page(
            &active,
            "Rotate the webhook URL",
            " data-static=\"1\"",
            &pages::rotate_confirm(&active.csrf),
        ),
        None => Page::SignIn(Redirect::to("/")),
    }
}

/// Rotate, and show the new URL this once (the answer is `no-store`).
#[post("/ui/rotate", data = "<form>")]
async fn rotate(changer: Changer, form: Form<CsrfOnly>, app: &State<App>) -> Result<Page, Html> {
    changer.allows(&form.csrf)?;
    let (url, _secret) = rotate_secret(app).await?;
    Ok(page(
        &changer.0,
        "New webhook URL",
        " data-static=\"1\"",
        &pages::rotated(&url),
    ))
}

#[cfg(test)]
mod tests {
    use super::is_dashboard_path;

    #[test]
    fn security_headers_cover_the_dashboard_only() {
        for path in [
            "/",
            "/ui/deployments",
            "/ui/assets/app.js",
            "/api/admin/events",
        ] {
            assert!(is_dashboard_path(path), "{path}");
        }
        for path in ["/api/admin/projects", "/healthz", "/api/webhook/x"] {
            assert!(!is_dashboard_path(path), "{path}");
        }
    }
}
