//! `GET /api/admin/events`: server-sent events, one `deployment` event (the
//! deployment's JSON, as the admin API gives it) per change, and a heartbeat
//! comment every 15 s so proxies keep the stream open. Open to a dashboard
//! session or the bearer admin token. A session's stream ends when the
//! session does (sign-out, expiry, a new admin token); every stream ends when
//! wharf shuts down. `EventSource` reconnects on its own.

use std::time::Duration;

use rocket::http::Status;
use rocket::request::{FromRequest, Outcome};
use rocket::response::stream::{Event, EventStream};
use rocket::{get, Request, Shutdown, State};
use tokio::sync::broadcast::error::RecvError;

use super::{session_of, Dashboard};
use crate::api::admin::bearer_token;
use crate::api::App;

const HEARTBEAT: Duration = Duration::from_secs(15);
/// How often a session's stream checks that the session is still valid.
const SESSION_CHECK: Duration = Duration::from_secs(5);

/// Who may listen: a session (by id, re-checked while streaming) or the
/// bearer admin token.
pub enum Listener {
    Session(String),
    Bearer,
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Listener {
    type Error = &'static str;

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        let Some(app) = request.rocket().state::<App>() else {
            return Outcome::Error((Status::InternalServerError, "no app state"));
        };
        if let Some(token) = request
            .headers()
            .get_one("Authorization")
            .and_then(bearer_token)
        {
            return if app.admin_token_matches(token) {
                Outcome::Success(Listener::Bearer)
            } else {
                Outcome::Error((Status::Unauthorized, "a valid admin token is required"))
            };
        }
        match session_of(request) {
            Some(active) => Outcome::Success(Listener::Session(active.id)),
            None => Outcome::Error((
                Status::Unauthorized,
                "a dashboard session or the admin token is required",
            )),
        }
    }
}

#[get("/api/admin/events")]
pub fn events(
    listener: Listener,
    app: &State<App>,
    dashboard: &State<Dashboard>,
    mut shutdown: Shutdown,
) -> EventStream![] {
    let mut changes = app.engine.subscribe();
    let secrets = app.secrets.clone();
    let sessions = dashboard.sessions.clone();
    EventStream! {
        yield Event::data("{}").event("hello");
        let mut check = tokio::time::interval(SESSION_CHECK);
        loop {
            tokio::select! {
                change = changes.recv() => match change {
                    Ok(deployment) => yield Event::json(&deployment).event("deployment"),
                    // Fell behind: the page reloads what it shows.
                    Err(RecvError::Lagged(_)) => yield Event::data("{}").event("lagged"),
                    Err(RecvError::Closed) => break,
                },
                _ = check.tick() => {
                    if let Listener::Session(id) = &listener {
                        if sessions.check(id, &secrets.load().admin_token).is_none() {
                            yield Event::data("{}").event("signed_out");
                            break;
                        }
                    }
                }
                _ = &mut shutdown => break,
            }
        }
    }
    .heartbeat(HEARTBEAT)
}
