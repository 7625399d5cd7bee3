//! The admin API: `Authorization: Bearer <admin_token>` on every route, else
//! 401. Rotation, projects, deployments, approvals, manual deploys,
//! rollbacks; and metrics, which the read-only `metrics_token` opens too.

use std::sync::Arc;

use rocket::fairing::AdHoc;
use rocket::http::{ContentType, Status};
use rocket::request::{FromRequest, Outcome};
use rocket::serde::json::{json, Json, Value};
use rocket::{get, post, routes, Request, State};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::App;
use crate::config::project::{Project, Stage};
use crate::deploy::store::{Deployment, LogEntry, NewDeployment, Query, Status as DeployStatus};
use crate::reference::{echo, is_valid_tag};

pub fn stage() -> AdHoc {
    AdHoc::on_ignite("admin routes", |rocket| async {
        rocket.mount(
            "/",
            routes![
                rotate,
                projects,
                deployments,
                deployment,
                approve,
                reject,
                deploy,
                rollback,
                routes,
                metrics
            ],
        )
    })
}

/// Proof that the request carried the admin token.
pub struct Admin;

/// Proof that the request may read `/metrics`: the admin token or the
/// read-only metrics token.
pub struct MetricsReader;

/// The token of an `Authorization: Bearer <token>` header. The scheme is
/// case-insensitive (RFC 9110 §11.1); spaces around the token are allowed.
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The app and the presented bearer token, or why the request is refused.
fn presented<'r>(request: &'r Request<'_>) -> Result<(&'r App, &'r str), (Status, &'static str)> {
    let Some(app) = request.rocket().state::<App>() else {
        return Err((Status::InternalServerError, "no app state"));
    };
    request
        .headers()
        .get_one("Authorization")
        .and_then(bearer_token)
        .map(|token| (app, token))
        .ok_or((Status::Unauthorized, "a valid token is required"))
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Admin {
    type Error = &'static str;

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        match presented(request) {
            Ok((app, token)) if app.admin_token_matches(token) => Outcome::Success(Admin),
            Ok(_) => Outcome::Error((Status::Unauthorized, "a valid admin token is required")),
            Err(refused) => Outcome::Error(refused),
        }
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for MetricsReader {
    type Error = &'static str;

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        match presented(request) {
            Ok((app, token))
                if app.metrics_token_matches(token) || app.admin_token_matches(token) =>
            {
                Outcome::Success(MetricsReader)
            }
            Ok(_) => Outcome::Error((
                Status::Unauthorized,
                "a valid metrics or admin token is required",
            )),
            Err(refused) => Outcome::Error(refused),
        }
    }
}

#[post("/api/admin/rotate")]
async fn rotate(_admin: Admin, app: &State<App>) -> Result<Value, ApiError> {
    let (webhook_url, webhook_secret) = rotate_secret(app).await?;
    Ok(json!({
        "webhook_url": webhook_url,
        "webhook_secret": webhook_secret,
    }))
}

/// A new webhook secret, persisted before it takes effect (the old one is
/// 404 from then on). Returns the new URL and secret. Shared by the admin
/// API and the dashboard.
///
/// # Errors
/// `settings.toml` cannot be written: the old secret stays in force.
pub async fn rotate_secret(app: &App) -> Result<(String, String), ApiError> {
    let rotated = app.secrets.load().rotated();
    let state_dir = app.config.state_dir.clone();
    let saved = rotated.clone();
    tokio::task::spawn_blocking(move || saved.save(&state_dir))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| {
            tracing::error!(error = %e, "cannot write the rotated secret; the old one stays");
            ApiError::Internal("cannot write settings.toml; the old secret stays in force".into())
        })?;
    app.secrets.store(std::sync::Arc::new(rotated.clone()));
    tracing::info!("webhook secret rotated");
    Ok((
        app.webhook_url(&rotated.webhook_secret),
        rotated.webhook_secret,
    ))
}

#[derive(Serialize)]
struct StageView {
    name: String,
    tags: Vec<String>,
    auto_deploy: bool,
    deployer: String,
    /// The `poll` interval (`5m`), absent when the stage does not poll.
    #[serde(skip_serializing_if = "Option::is_none")]
    poll: Option<String>,
    /// Why the stage's last poll failed; null when it worked (or the stage
    /// does not poll).
    poll_error: Option<String>,
    last_deployment: Option<Deployment>,
}

#[get("/api/admin/projects")]
async fn projects(_admin: Admin, app: &State<App>) -> Result<Value, ApiError> {
    let catalog = app.engine.catalog();
    let latest = app
        .engine
        .store()
        .call(|store| store.latest_per_stage())
        .await?;
    let projects: Vec<Value> = catalog
        .projects()
        .map(|project| {
            let stages: Vec<StageView> = project
                .stages
                .values()
                .map(|stage| StageView {
                    name: stage.name.clone(),
                    tags: stage.tags.clone(),
                    auto_deploy: stage.auto_deploy,
                    deployer: stage.deployer.clone(),
                    poll: stage
                        .poll
                        .map(|interval| wharf_plugin_api::duration::format(interval).to_string()),
                    poll_error: app.polls.error(&project.name, &stage.name),
                    last_deployment: latest
                        .iter()
                        .find(|d| d.project == project.name && d.stage == stage.name)
                        .cloned(),
                })
                .collect();
            json!({
                "name": project.name,
                "image": project.repository,
                "deployer": project.deployer,
                "source": project.source,
                "stages": stages,
            })
        })
        .collect();
    let errors: Vec<_> = catalog.errors().cloned().collect();
    Ok(json!({ "projects": projects, "errors": errors }))
}

/// Deployments, newest first. Each filter is taken as a list so that a
/// repeated or unparsable value is refused: Rocket's `Option<T>` reads those
/// as absent, which would answer an unfiltered list to a filtered question.
#[get("/api/admin/deployments?<project>&<stage>&<status>&<limit>&<before>")]
async fn deployments(
    _admin: Admin,
    app: &State<App>,
    project: Vec<String>,
    stage: Vec<String>,
    status: Vec<String>,
    limit: Vec<String>,
    before: Vec<String>,
) -> Result<Value, ApiError> {
    let project = single("project", project)?;
    let stage = single("stage", stage)?;
    let status = match single("status", status)? {
        None => None,
        Some(text) => Some(DeployStatus::parse(&text).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "unknown status {} (one of: {})",
                echo(&text),
                DeployStatus::ALL.map(DeployStatus::as_str).join(", ")
            ))
        })?),
    };
    let limit = match single("limit", limit)? {
        None => 50,
        Some(text) => text.parse::<u32>().map_err(|_| {
            ApiError::BadRequest(format!(
                "limit must be a whole number (0 to 1000; more reads as 1000), not {}",
                echo(&text)
            ))
        })?,
    }
    .clamp(1, 1000);
    let store = app.engine.store().clone();
    let before_seq = match single("before", before)? {
        None => None,
        Some(id) => {
            let found = store.call(move |store| store.get(&id)).await?;
            Some(found.map(|d| d.seq).ok_or_else(|| {
                ApiError::BadRequest("before names no deployment (use a next_before)".into())
            })?)
        }
    };
    let page = store
        .call(move |store| {
            store.list(&Query {
                project,
                stage,
                status,
                before_seq,
                limit,
            })
        })
        .await?;
    let next = (page.len() == limit as usize)
        .then(|| page.last().map(|d| d.id.clone()))
        .flatten();
    Ok(json!({ "deployments": page, "next_before": next }))
}

/// At most one value of a query parameter; an empty one is no filter.
fn single(name: &str, values: Vec<String>) -> Result<Option<String>, ApiError> {
    let mut values = values.into_iter();
    match (values.next(), values.next()) {
        (Some(_), Some(_)) => Err(ApiError::BadRequest(format!(
            "{name} is given more than once; it takes one value"
        ))),
        (first, _) => Ok(first.filter(|value| !value.is_empty())),
    }
}

#[derive(Serialize)]
struct DeploymentWithLog {
    #[serde(flatten)]
    deployment: Deployment,
    log: Vec<LogEntry>,
}

#[get("/api/admin/deployments/<id>")]
async fn deployment(
    _admin: Admin,
    app: &State<App>,
    id: String,
) -> Result<Json<DeploymentWithLog>, ApiError> {
    let found = app
        .engine
        .store()
        .call(move |store| match store.get(&id)? {
            Some(deployment) => {
                let log = store.log(deployment.seq)?;
                Ok(Some(DeploymentWithLog { deployment, log }))
            }
            None => Ok(None),
        })
        .await?;
    found
        .map(Json)
        .ok_or_else(|| ApiError::NoSuchThing("no deployment with that id".into()))
}

#[post("/api/admin/deployments/<id>/approve")]
async fn approve(_admin: Admin, app: &State<App>, id: &str) -> Result<Json<Deployment>, ApiError> {
    approve_deployment(app, id).await.map(Json)
}

#[post("/api/admin/deployments/<id>/reject")]
async fn reject(_admin: Admin, app: &State<App>, id: &str) -> Result<Json<Deployment>, ApiError> {
    reject_deployment(app, id).await.map(Json)
}

/// Queue an `awaiting_approval` deployment (admin API and dashboard).
///
/// # Errors
/// No such deployment (404), not awaiting approval (409), the store failed.
pub async fn approve_deployment(app: &App, id: &str) -> Result<Deployment, ApiError> {
    match app.engine.approve(id).await? {
        Some(deployment) => Ok(deployment),
        None => Err(not_awaiting(app, id).await),
    }
}

/// Reject an `awaiting_approval` deployment (admin API and dashboard).
///
/// # Errors
/// As for [`approve_deployment`].
pub async fn reject_deployment(app: &App, id: &str) -> Result<Deployment, ApiError> {
    match app.engine.reject(id).await? {
        Some(deployment) => Ok(deployment),
        None => Err(not_awaiting(app, id).await),
    }
}

/// Why an approve or reject did nothing: no such deployment, or not pending.
async fn not_awaiting(app: &App, id: &str) -> ApiError {
    let owned = id.to_string();
    match app.engine.store().call(move |s| s.get(&owned)).await {
        Ok(Some(deployment)) => ApiError::Conflict(format!(
            "deployment is {}, not awaiting_approval",
            deployment.status.as_str()
        )),
        Ok(None) => ApiError::NoSuchThing("no deployment with that id".into()),
        Err(e) => e.into(),
    }
}

#[derive(Deserialize)]
struct DeployBody {
    project: String,
    stage: String,
    tag: String,
}

#[post("/api/admin/deploy", data = "<body>")]
async fn deploy(
    _admin: Admin,
    app: &State<App>,
    body: Json<DeployBody>,
) -> Result<(Status, Json<Deployment>), ApiError> {
    let deployment = manual_deploy(app, &body.project, &body.stage, &body.tag).await?;
    Ok((Status::Accepted, Json(deployment)))
}

/// Record a manual deployment of `tag` to a stage (admin API and dashboard).
///
/// # Errors
/// An invalid tag (400), an unknown project or stage (404), shutting down
/// (503), the store failed.
pub async fn manual_deploy(
    app: &App,
    project: &str,
    stage: &str,
    tag: &str,
) -> Result<Deployment, ApiError> {
    if !is_valid_tag(tag) {
        return Err(ApiError::BadRequest(format!("invalid tag {}", echo(tag))));
    }
    let new = new_deployment(app, project, stage, tag, None, "manual")?;
    record(app, new).await
}

#[derive(Deserialize)]
struct RollbackBody {
    project: String,
    stage: String,
}

#[post("/api/admin/rollback", data = "<body>")]
async fn rollback(
    _admin: Admin,
    app: &State<App>,
    body: Json<RollbackBody>,
) -> Result<(Status, Json<Deployment>), ApiError> {
    let deployment = rollback_stage(app, &body.project, &body.stage).await?;
    Ok((Status::Accepted, Json(deployment)))
}

/// Redeploy the image of a stage's previous succeeded deployment (admin API
/// and dashboard).
///
/// # Errors
/// An unknown project or stage (404), no earlier succeeded deployment with
/// another image (409), shutting down (503), the store failed.
pub async fn rollback_stage(
    app: &App,
    project_name: &str,
    stage_name: &str,
) -> Result<Deployment, ApiError> {
    // An unknown project or stage is a 404, as for a deploy, before its
    // history is asked: no history would read as a 409 conflict.
    known_stage(app, project_name, stage_name)?;
    let (project, stage) = (project_name.to_string(), stage_name.to_string());
    let succeeded = app
        .engine
        .store()
        .call(move |store| store.succeeded(&project, &stage, 100))
        .await?;
    let Some(current) = succeeded.first() else {
        return Err(ApiError::Conflict(format!(
            "{project_name}/{stage_name} has no succeeded deployment yet"
        )));
    };
    let Some(previous) = succeeded
        .iter()
        .find(|d| d.tag != current.tag || d.digest != current.digest)
    else {
        return Err(ApiError::Conflict(format!(
            "{project_name}/{stage_name} has no earlier succeeded deployment with another image than {}",
            current.tag
        )));
    };
    let new = new_deployment(
        app,
        project_name,
        stage_name,
        &previous.tag,
        previous.digest.clone(),
        "rollback",
    )?;
    record(app, new).await
}

fn new_deployment(
    app: &App,
    project: &str,
    stage: &str,
    tag: &str,
    digest: Option<String>,
    trigger: &'static str,
) -> Result<NewDeployment, ApiError> {
    let (project, stage) = known_stage(app, project, stage)?;
    Ok(NewDeployment {
        project: project.name.clone(),
        stage: stage.name.clone(),
        repository: project.repository.clone(),
        tag: tag.to_string(),
        digest,
        deployer: stage.deployer.clone(),
        // An operator asked for it explicitly: no second approval.
        status: DeployStatus::Queued,
        trigger,
    })
}

/// The loaded project and stage a request names, or a 404 saying which one
/// is unknown.
fn known_stage(app: &App, project: &str, stage: &str) -> Result<(Arc<Project>, Stage), ApiError> {
    let catalog = app.engine.catalog();
    let project = catalog
        .project(project)
        .cloned()
        .ok_or_else(|| ApiError::NoSuchThing(format!("no project {}", echo(project))))?;
    let stage = project.stages.get(stage).cloned().ok_or_else(|| {
        ApiError::NoSuchThing(format!(
            "project '{}' has no stage {}",
            project.name,
            echo(stage)
        ))
    })?;
    Ok((project, stage))
}

async fn record(app: &App, new: NewDeployment) -> Result<Deployment, ApiError> {
    if !app.engine.is_accepting() {
        return Err(ApiError::Unavailable);
    }
    let recorded = app.engine.submit(vec![new], Vec::new()).await?;
    recorded
        .and_then(|mut d| d.pop())
        .ok_or_else(|| ApiError::Internal("deployment not recorded".into()))
}

/// Every route the proxy serves: listen address, project/stage, the
/// container and image it points to, requests in flight. When no proxy
/// runs, an empty list that says so (listing never starts one).
#[get("/api/admin/routes")]
async fn routes(_admin: Admin, app: &State<App>) -> Result<Json<Value>, ApiError> {
    if !app.routes.answers().await {
        return Ok(Json(json!({"proxy": "not running", "routes": []})));
    }
    let routes = app
        .routes
        .list()
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(json!({
        "proxy": "running",
        "routes": routes.iter().map(route_json).collect::<Vec<_>>(),
    })))
}

fn route_json(route: &wharf_plugin_api::routes::RouteState) -> Value {
    json!({
        "listen": route.spec.listen.to_string(),
        "mode": route.spec.mode,
        "project": route.spec.project,
        "stage": route.spec.stage,
        "container": route.spec.upstream.container,
        "container_id": route.spec.upstream.container_id,
        "image": route.spec.upstream.image,
        "upstream": route.spec.upstream.address.to_string(),
        "in_flight": route.in_flight,
        "draining": route.draining,
        "requests": route.requests,
        "switches": route.switches,
    })
}

#[get("/metrics")]
async fn metrics(
    _reader: MetricsReader,
    app: &State<App>,
) -> Result<(ContentType, String), ApiError> {
    let counts = app
        .engine
        .store()
        .call(|store| store.count_by_status())
        .await?;
    let mut text = app.metrics.render(&counts);
    // The proxy counts routed requests itself (it outlives the daemon);
    // they are read from it, never by starting one.
    if app.routes.answers().await {
        if let Ok(routes) = app.routes.list().await {
            crate::metrics::render_routes(&mut text, &routes);
        }
    }
    Ok((
        ContentType::new("text", "plain").with_params(("version", "0.0.4")),
        text,
    ))
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for value in ["Bearer abc", "bearer abc", "BEARER  abc ", " Bearer abc"] {
            assert_eq!(bearer_token(value), Some("abc"), "{value:?}");
        }
        for value in ["Basic abc", "Bearer", "Bearer ", "Bearerabc", "abc"] {
            assert_eq!(bearer_token(value), None, "{value:?}");
        }
    }
}
