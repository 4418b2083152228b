//! The one place where every failure becomes an HTTP status and a JSON body.
//!
//! Every error a client can cause is a 4xx whose message names the problem
//! (the model, the version, the digest, the field); a 5xx means the server
//! itself failed, and its message says so without leaking host paths.

use airlock_blobs::BlobError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error answered to a client: a status, a stable machine-readable code
/// and a one-line message naming the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable code clients can branch on (`not_found`, `unauthorized`, ...).
    pub code: &'static str,
    /// What went wrong, naming the offending value.
    pub message: String,
    /// Seconds after which a retry may succeed (overload).
    pub retry_after: Option<u64>,
}

/// The result of every handler.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400: the request is malformed or names something invalid.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 400 for a name (model, plugin, alias, gate) that breaks the naming rule.
    pub fn bad_name(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_name", message)
    }

    /// 401: no token, or one that does not authenticate.
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403: the token authenticates but its role or scope does not allow this.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404: the named thing does not exist.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 409: the request conflicts with what is stored (a reused version
    /// number, an existing name bound to other bytes).
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 429 with `Retry-After`: this caller is over its request budget.
    pub fn over_budget(message: impl Into<String>, retry_after: u64) -> ApiError {
        ApiError {
            retry_after: Some(retry_after),
            ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message)
        }
    }

    /// 413: the body is over its cap.
    pub fn too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
    }

    /// 422: well-formed, but refused by a rule (a signature, the trust
    /// policy, a gate's checks).
    pub fn refused(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// 503 with `Retry-After`: the server is busy or shutting down.
    pub fn unavailable(message: impl Into<String>, retry_after: u64) -> ApiError {
        ApiError {
            retry_after: Some(retry_after),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
        }
    }

    /// 503 `stopping` with `Retry-After`: the server is shutting down and
    /// takes no new request; a client waiting on something says so and
    /// names how to look at it later.
    pub fn stopping(message: impl Into<String>, retry_after: u64) -> ApiError {
        ApiError {
            retry_after: Some(retry_after),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "stopping", message)
        }
    }

    /// A served model failed this request (only this one): 422
    /// `model_refused` when the model returned its own error for the input,
    /// else 502 `model_failed` naming the failure kind (trap, fuel, time,
    /// memory, invalid output, ...).
    pub fn model_failed(
        model: &str,
        version: &str,
        f: &airlock_runtime::PluginFailure,
    ) -> ApiError {
        if f.kind == airlock_runtime::FailureKind::GuestError {
            return ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "model_refused",
                format!(
                    "model {model} version {version} refused the input: {}",
                    f.message
                ),
            );
        }
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "model_failed",
            format!(
                "model {model} version {version} failed on this request: {}: {}",
                f.kind, f.message
            ),
        )
    }

    /// 500: the server failed. `what` says which operation, never a host path.
    pub fn internal(what: impl std::fmt::Display) -> ApiError {
        let message = format!("internal error: {what}");
        tracing::error!("{message}");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(s) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> ApiError {
        ApiError::internal(format_args!("metadata store: {e}"))
    }
}

impl From<BlobError> for ApiError {
    fn from(e: BlobError) -> ApiError {
        match &e {
            BlobError::NotFound { .. } => ApiError::not_found(e.to_string()),
            BlobError::TooLarge { .. } => ApiError::too_large(e.to_string()),
            BlobError::DigestMismatch { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, "digest_mismatch", e.to_string())
            }
            // A stored blob that no longer hashes to its name: refused,
            // named, never used.
            BlobError::Corrupt { .. } => ApiError::refused("corrupt_blob", e.to_string()),
            _ => ApiError::internal(format_args!("blob store: {e}")),
        }
    }
}

/// An error reading blob `digest` through its reader: the blob store's
/// own error when the reader carries one (a changed blob is refused,
/// named), else a 500 naming the blob.
pub fn blob_read(digest: &airlock_core::digest::Digest, e: std::io::Error) -> ApiError {
    match BlobError::of_io(&e) {
        Some(BlobError::Corrupt { digest, reason }) => ApiError::from(BlobError::Corrupt {
            digest: *digest,
            reason: reason.clone(),
        }),
        _ => ApiError::internal(format_args!("reading blob {digest}: {e}")),
    }
}

impl From<airlock_audit::LogError> for ApiError {
    fn from(e: airlock_audit::LogError) -> ApiError {
        ApiError::internal(format_args!("audit log: {e}"))
    }
}

/// JSON and query extractors whose rejections are [`ApiError`]s, so a
/// malformed body or query is a JSON 400 naming the problem like any other.
pub mod extract {
    use super::ApiError;
    use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
    use axum::extract::{FromRequest, FromRequestParts};

    /// A JSON body (`axum::Json`) with JSON errors.
    #[derive(Debug, FromRequest)]
    #[from_request(via(axum::Json), rejection(ApiError))]
    pub struct Json<T>(pub T);

    /// A query string (`axum::extract::Query`) with JSON errors.
    #[derive(Debug, FromRequestParts)]
    #[from_request(via(axum::extract::Query), rejection(ApiError))]
    pub struct Query<T>(pub T);

    /// Path parameters (`axum::extract::Path`) with JSON errors.
    #[derive(Debug, FromRequestParts)]
    #[from_request(via(axum::extract::Path), rejection(ApiError))]
    pub struct Path<T>(pub T);

    impl From<JsonRejection> for ApiError {
        fn from(r: JsonRejection) -> ApiError {
            match r {
                JsonRejection::MissingJsonContentType(_) => {
                    ApiError::bad_request("the body must be JSON (Content-Type: application/json)")
                }
                JsonRejection::BytesRejection(e) => {
                    ApiError::too_large(format!("request body: {}", e.body_text()))
                }
                other => ApiError::bad_request(format!("request body: {}", other.body_text())),
            }
        }
    }

    impl From<QueryRejection> for ApiError {
        fn from(r: QueryRejection) -> ApiError {
            ApiError::bad_request(format!("query string: {}", r.body_text()))
        }
    }

    impl From<PathRejection> for ApiError {
        fn from(r: PathRejection) -> ApiError {
            ApiError::bad_name(format!("path: {}", r.body_text()))
        }
    }
}
