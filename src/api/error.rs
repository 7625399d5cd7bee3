//! One error type for the HTTP API and the one place that maps it to a status
//! and a JSON body. The full cause of an internal error goes to the log; the
//! caller gets a short message.

use rocket::http::{ContentType, Status};
use rocket::response::{self, Responder};
use rocket::Request;

use crate::deploy::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Answered by the 404 catcher, byte for byte what an unknown path gets.
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    NoSuchThing(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("unauthorized: {0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("body is larger than webhook.body_limit ({0} bytes)")]
    TooLarge(u64),
    #[error("wharf is shutting down; retry later")]
    Unavailable,
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        tracing::error!(%error, "store error while answering a request");
        ApiError::Internal("the deployment store failed; nothing was changed".into())
    }
}

impl ApiError {
    pub fn status(&self) -> Status {
        match self {
            ApiError::NotFound | ApiError::NoSuchThing(_) => Status::NotFound,
            ApiError::BadRequest(_) => Status::BadRequest,
            ApiError::Unauthorized(_) => Status::Unauthorized,
            ApiError::Conflict(_) => Status::Conflict,
            ApiError::TooLarge(_) => Status::PayloadTooLarge,
            ApiError::Unavailable => Status::ServiceUnavailable,
            ApiError::Internal(_) => Status::InternalServerError,
        }
    }
}

impl<'r> Responder<'r, 'static> for ApiError {
    fn respond_to(self, request: &'r Request<'_>) -> response::Result<'static> {
        if let ApiError::NotFound = self {
            return Err(Status::NotFound);
        }
        let body = serde_json::json!({ "error": self.to_string() }).to_string();
        (self.status(), (ContentType::JSON, body)).respond_to(request)
    }
}
