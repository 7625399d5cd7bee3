//! The admin API: `Authorization: Bearer <admin_token>` on every route, else
//! 401. Rotation, projects, deployments, approvals, manual deploys,
//! rollbacks; and metrics, which the read-only `metrics_token` opens too.

use rocket::fairing::AdHoc;
use rocket::http::{ContentType, Status};
use rocket::request::{FromRequest, Outcome};
use rocket::serde::json::{json, Json, Value};
use rocket::{get, post, routes, Request, State};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::App;
use crate::deploy::store::{Deployment, LogEntry, NewDeployment, Query, Status as DeployStatus};
use crate::reference::is_valid_tag;

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
    tracing::info!("webhook secret rotated through the admin API");
    Ok(json!({
        "webhook_url": app.webhook_url(&rotated.webhook_secret),
        "webhook_secret": rotated.webhook_secret,
    }))
}

#[derive(Serialize)]
struct StageView {
    name: String,
    tags: Vec<String>,
    auto_deploy: bool,
    deployer: String,
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

#[get("/api/admin/deployments?<project>&<stage>&<status>&<limit>&<before>")]
async fn deployments(
    _admin: Admin,
    app: &State<App>,
    project: Option<String>,
    stage: Option<String>,
    status: Option<String>,
    limit: Option<u32>,
    before: Option<String>,
) -> Result<Value, ApiError> {
    let status = match status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(text) => Some(DeployStatus::parse(text).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "unknown status '{text}' (one of: {})",
                DeployStatus::ALL.map(DeployStatus::as_str).join(", ")
            ))
        })?),
    };
    let limit = limit.unwrap_or(50).clamp(1, 1000);
    let store = app.engine.store().clone();
    let page = store
        .call(move |store| {
            let before_seq = match before.filter(|b| !b.is_empty()) {
                Some(id) => Some(store.get(&id)?.map(|d| d.seq).unwrap_or(0)),
                None => None,
            };
            store.list(&Query {
                project: project.filter(|p| !p.is_empty()),
                stage: stage.filter(|s| !s.is_empty()),
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
    match app.engine.approve(id).await? {
        Some(deployment) => Ok(Json(deployment)),
        None => Err(not_awaiting(app, id).await),
    }
}

#[post("/api/admin/deployments/<id>/reject")]
async fn reject(_admin: Admin, app: &State<App>, id: &str) -> Result<Json<Deployment>, ApiError> {
    match app.engine.reject(id).await? {
        Some(deployment) => Ok(Json(deployment)),
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
    if !is_valid_tag(&body.tag) {
        return Err(ApiError::BadRequest(format!("invalid tag '{}'", body.tag)));
    }
    let new = new_deployment(app, &body.project, &body.stage, &body.tag, None, "manual")?;
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
    let (project, stage) = (body.project.clone(), body.stage.clone());
    let succeeded = app
        .engine
        .store()
        .call(move |store| store.succeeded(&project, &stage, 100))
        .await?;
    let Some(current) = succeeded.first() else {
        return Err(ApiError::Conflict(format!(
            "{}/{} has no succeeded deployment yet",
            body.project, body.stage
        )));
    };
    let Some(previous) = succeeded
        .iter()
        .find(|d| d.tag != current.tag || d.digest != current.digest)
    else {
        return Err(ApiError::Conflict(format!(
            "{}/{} has no earlier succeeded deployment with another image than {}",
            body.project, body.stage, current.tag
        )));
    };
    let new = new_deployment(
        app,
        &body.project,
        &body.stage,
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
    let catalog = app.engine.catalog();
    let project = catalog
        .project(project)
        .ok_or_else(|| ApiError::NoSuchThing(format!("no project '{project}'")))?;
    let stage = project.stages.get(stage).ok_or_else(|| {
        ApiError::NoSuchThing(format!("project '{}' has no stage '{stage}'", project.name))
    })?;
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

async fn record(app: &App, new: NewDeployment) -> Result<(Status, Json<Deployment>), ApiError> {
    if !app.engine.is_accepting() {
        return Err(ApiError::Unavailable);
    }
    let recorded = app.engine.submit(vec![new], Vec::new()).await?;
    let deployment = recorded
        .and_then(|mut d| d.pop())
        .ok_or_else(|| ApiError::Internal("deployment not recorded".into()))?;
    Ok((Status::Accepted, Json(deployment)))
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
