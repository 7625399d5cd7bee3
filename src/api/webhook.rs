//! `POST /api/webhook/<secret>`: the one URL CI systems and registries call.
//!
//! The secret is checked first, before the body is read, and a wrong one
//! gets exactly the response of an unknown path.

use rocket::data::{Data, ToByteUnit};
use rocket::fairing::AdHoc;
use rocket::http::Status;
use rocket::serde::json::Json;
use rocket::{post, routes, State};

use super::error::ApiError;
use super::{header_pairs, App, RequestHeaders};
use crate::metrics::WebhookResult;
use crate::webhook::{self, Accepted, WebhookError};

pub fn stage() -> AdHoc {
    AdHoc::on_ignite("webhook routes", |rocket| async {
        rocket.mount("/", routes![receive])
    })
}

#[post("/api/webhook/<secret>", data = "<body>")]
async fn receive(
    secret: &str,
    body: Data<'_>,
    headers: RequestHeaders<'_>,
    app: &State<App>,
) -> Result<(Status, Json<Accepted>), ApiError> {
    let result = handle(secret, body, &headers, app).await;
    app.metrics.webhook(match &result {
        Ok((status, _)) if *status == Status::Accepted => WebhookResult::Accepted,
        Ok(_) => WebhookResult::Ignored,
        Err(ApiError::NotFound) => WebhookResult::NotFound,
        Err(ApiError::Unauthorized(_)) => WebhookResult::Unauthorized,
        Err(ApiError::BadRequest(_)) => WebhookResult::BadRequest,
        Err(ApiError::TooLarge(_)) => WebhookResult::TooLarge,
        Err(ApiError::Unavailable) => WebhookResult::Unavailable,
        Err(_) => WebhookResult::Error,
    });
    result
}

async fn handle(
    secret: &str,
    body: Data<'_>,
    headers: &RequestHeaders<'_>,
    app: &App,
) -> Result<(Status, Json<Accepted>), ApiError> {
    if !app.webhook_secret_matches(secret) {
        return Err(ApiError::NotFound);
    }
    if !app.engine.is_accepting() {
        return Err(ApiError::Unavailable);
    }
    let limit = app.config.webhook.body_limit;
    let declared = headers
        .get("content-length")
        .and_then(|value| value.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(ApiError::TooLarge(limit));
    }
    let bytes = body
        .open(limit.bytes())
        .into_bytes()
        .await
        .map_err(|e| ApiError::BadRequest(format!("cannot read the body: {e}")))?;
    if !bytes.is_complete() {
        return Err(ApiError::TooLarge(limit));
    }
    let all = headers.all();
    let accepted = webhook::accept(&app.engine, &app.config, &header_pairs(&all), &bytes)
        .await
        .map_err(|e| match e {
            WebhookError::BadRequest(why) => ApiError::BadRequest(why),
            WebhookError::Unauthorized(why) => ApiError::Unauthorized(why),
            WebhookError::Store(e) => ApiError::from(e),
        })?;
    for deployment in &accepted.deployments {
        tracing::info!(
            id = %deployment.id,
            project = %deployment.project,
            stage = %deployment.stage,
            tag = %deployment.tag,
            status = deployment.status.as_str(),
            "deployment recorded"
        );
    }
    let status = if accepted.deployments.is_empty() {
        Status::Ok
    } else {
        Status::Accepted
    };
    Ok((status, Json(accepted)))
}
