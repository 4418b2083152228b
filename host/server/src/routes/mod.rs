//! The HTTP surface: every route, the permission it needs, and shared
//! request/response shapes. The permission each route needs is listed once,
//! in [`ROUTES`], which the role-matrix test and `docs/security.md` use.

pub mod admin;
pub mod artifacts;
pub mod deploy;
pub mod gates;
pub mod models;
pub mod runs;
pub mod serving;

use crate::access::Permission;
use crate::error::ApiError;
use crate::serving::oip;
use crate::state::AppState;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use listed::{Listed, delete, get, post, put};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A route as the access table lists it: method, path template, and the
/// permission it needs (`None`: no token needed).
pub struct RouteInfo {
    /// HTTP method.
    pub method: &'static str,
    /// Path template.
    pub path: &'static str,
    /// Needed permission.
    pub needs: Option<Permission>,
}

const fn r(method: &'static str, path: &'static str, needs: Option<Permission>) -> RouteInfo {
    RouteInfo {
        method,
        path,
        needs,
    }
}

use Permission as P;

/// Every route and the permission it needs.
pub const ROUTES: &[RouteInfo] = &[
    r("GET", "/v1/health", None),
    r("GET", "/v1/openapi.json", None),
    r("GET", "/v1/whoami", Some(P::Read)),
    r("POST", "/v1/blobs", Some(P::Submit)),
    r("GET", "/v1/blobs/{digest}", Some(P::Read)),
    r("POST", "/v1/plugins", Some(P::Submit)),
    r("GET", "/v1/plugins", Some(P::Read)),
    r("GET", "/v1/plugins/{digest}", Some(P::Read)),
    r("POST", "/v1/gates", Some(P::ManageGates)),
    r("GET", "/v1/gates", Some(P::Read)),
    r("GET", "/v1/gates/{name}", Some(P::Read)),
    r("GET", "/v1/gates/{name}/versions/{version}", Some(P::Read)),
    r("PUT", "/v1/gates/{name}/current", Some(P::ManageGates)),
    r("PUT", "/v1/models/{name}", Some(P::ManageGates)),
    r("GET", "/v1/models", Some(P::Read)),
    r("GET", "/v1/models/{name}", Some(P::Read)),
    r("POST", "/v1/models/{name}/versions", Some(P::Submit)),
    r("GET", "/v1/models/{name}/versions", Some(P::Read)),
    r("GET", "/v1/models/{name}/versions/{version}", Some(P::Read)),
    r(
        "POST",
        "/v1/models/{name}/versions/{version}/runs",
        Some(P::Submit),
    ),
    r(
        "POST",
        "/v1/models/{name}/versions/{version}/approvals",
        Some(P::Approve),
    ),
    r("POST", "/v1/models/{name}/promote", Some(P::Deploy)),
    r("POST", "/v1/models/{name}/rollback", Some(P::Deploy)),
    r("GET", "/v1/models/{name}/history", Some(P::Read)),
    r("GET", "/v1/runs/{id}", Some(P::Read)),
    r("GET", "/v1/runs/{id}/attestation", Some(P::Read)),
    r("POST", "/v1/runs/{id}/cancel", Some(P::Submit)),
    r("POST", "/v1/tokens", Some(P::Administer)),
    r("GET", "/v1/tokens", Some(P::Administer)),
    r("POST", "/v1/tokens/{id}/rotate", Some(P::Administer)),
    r("DELETE", "/v1/tokens/{id}", Some(P::Administer)),
    r("GET", "/v1/keys", Some(P::Read)),
    r("POST", "/v1/keys/rotate", Some(P::Administer)),
    r("GET", "/v1/trust-policy", Some(P::Read)),
    r("PUT", "/v1/trust-policy", Some(P::Administer)),
    r("GET", "/v1/audit", Some(P::Administer)),
    r("POST", "/v1/models/{name}/predict", Some(P::Predict)),
    r("POST", "/v1/models/{name}/feedback", Some(P::Label)),
    r("PUT", "/v1/models/{name}/serving", Some(P::ManageGates)),
    r("GET", "/v1/models/{name}/serving", Some(P::Read)),
    r("POST", "/v1/models/{name}/canary", Some(P::Deploy)),
    r("POST", "/v1/models/{name}/canary/resume", Some(P::Deploy)),
    r("POST", "/v1/models/{name}/canary/abort", Some(P::Deploy)),
    r("PUT", "/v1/models/{name}/shadow", Some(P::Deploy)),
    r("GET", "/metrics", Some(P::Read)),
    r("GET", "/v2/health/live", None),
    r("GET", "/v2/health/ready", None),
    r("GET", "/v2/models/{name}", Some(P::Predict)),
    r("GET", "/v2/models/{name}/ready", Some(P::Predict)),
    r(
        "GET",
        "/v2/models/{name}/versions/{version}",
        Some(P::Predict),
    ),
    r(
        "GET",
        "/v2/models/{name}/versions/{version}/ready",
        Some(P::Predict),
    ),
    r("POST", "/v2/models/{name}/infer", Some(P::Predict)),
    r(
        "POST",
        "/v2/models/{name}/versions/{version}/infer",
        Some(P::Predict),
    ),
];

/// What a scoped token's grant is checked against on a route. Every
/// route has one; `docs/security.md` prints them and the route × role ×
/// scope test walks them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// The model `{name}` in the path: it must be one of the token's.
    Model,
    /// The gate `{name}` (in the path, or in the signed body when
    /// publishing): changing it needs every model it judges in scope,
    /// reading it one of them (or none judged yet).
    Gate,
    /// The run `{id}`: its model must be one of the token's.
    Run,
    /// The whole server (tokens, host keys, trust policy, audit log): a
    /// scoped token is refused.
    Server,
    /// A list or exposition filtered to the token's models.
    Filtered,
    /// Content-addressed, immutable or public material shared by every
    /// model (blobs, plugins, public keys, the trust policy, health), or
    /// the caller itself: no model to scope by.
    Shared,
}

impl Reach {
    /// The rule's name in docs and errors.
    pub fn as_str(self) -> &'static str {
        match self {
            Reach::Model => "model",
            Reach::Gate => "gate",
            Reach::Run => "run",
            Reach::Server => "server",
            Reach::Filtered => "filtered",
            Reach::Shared => "shared",
        }
    }
}

impl RouteInfo {
    /// How a scoped token is checked on this route, from its template.
    pub fn reach(&self) -> Reach {
        let p = self.path;
        if self.needs == Some(Permission::Administer) {
            Reach::Server
        } else if p.starts_with("/v1/models/{name}") || p.starts_with("/v2/models/{name}") {
            Reach::Model
        } else if p.starts_with("/v1/gates/{name}") || (p == "/v1/gates" && self.method == "POST") {
            Reach::Gate
        } else if p.starts_with("/v1/runs/{id}") {
            Reach::Run
        } else if (p == "/v1/models" || p == "/v1/gates") && self.method == "GET" || p == "/metrics"
        {
            Reach::Filtered
        } else {
            Reach::Shared
        }
    }
}

/// Builds the router.
pub fn router(state: Arc<AppState>) -> Router {
    build(state).0
}

/// Every (method, path template) the router serves, as registered (the
/// access-table test compares it with [`ROUTES`] both ways, so that a
/// route served but not listed cannot go unnoticed).
pub fn registered(state: Arc<AppState>) -> Vec<(&'static str, &'static str)> {
    build(state).1
}

fn build(state: Arc<AppState>) -> (Router, Vec<(&'static str, &'static str)>) {
    let json_limit = state.config.max_json_bytes;
    let api = Listed::new()
        .route("/v1/health", get(admin::health))
        .route("/v1/openapi.json", get(crate::openapi::document))
        .route("/v1/whoami", get(admin::whoami))
        .route(
            "/v1/blobs",
            post(artifacts::upload_blob).layer(DefaultBodyLimit::disable()),
        )
        .route("/v1/blobs/{digest}", get(artifacts::get_blob))
        .route(
            "/v1/plugins",
            post(artifacts::register_plugin).get(artifacts::list_plugins),
        )
        .route("/v1/plugins/{digest}", get(artifacts::get_plugin))
        .route(
            "/v1/gates",
            post(gates::publish_gate).get(gates::list_gates),
        )
        .route("/v1/gates/{name}", get(gates::get_gate))
        .route(
            "/v1/gates/{name}/versions/{version}",
            get(gates::get_gate_version),
        )
        .route("/v1/gates/{name}/current", put(gates::switch_gate))
        .route("/v1/models", get(models::list_models))
        .route(
            "/v1/models/{name}",
            put(models::put_model).get(models::get_model),
        )
        .route(
            "/v1/models/{name}/versions",
            post(models::submit_version).get(models::list_versions),
        )
        .route(
            "/v1/models/{name}/versions/{version}",
            get(models::get_version),
        )
        .route(
            "/v1/models/{name}/versions/{version}/runs",
            post(runs::rerun),
        )
        .route(
            "/v1/models/{name}/versions/{version}/approvals",
            post(deploy::approve),
        )
        .route("/v1/models/{name}/promote", post(deploy::promote))
        .route("/v1/models/{name}/rollback", post(deploy::rollback))
        .route("/v1/models/{name}/history", get(deploy::history))
        .route("/v1/runs/{id}", get(runs::get_run))
        .route("/v1/runs/{id}/attestation", get(runs::get_attestation))
        .route("/v1/runs/{id}/cancel", post(runs::cancel_run))
        .route(
            "/v1/tokens",
            post(admin::create_token).get(admin::list_tokens),
        )
        .route("/v1/tokens/{id}/rotate", post(admin::rotate_token))
        .route("/v1/tokens/{id}", delete(admin::revoke_token))
        .route("/v1/keys", get(admin::list_keys))
        .route("/v1/keys/rotate", post(admin::rotate_key))
        .route(
            "/v1/trust-policy",
            get(admin::get_policy).put(admin::put_policy),
        )
        .route("/v1/audit", get(admin::audit))
        .route(
            "/v1/models/{name}/serving",
            put(serving::put_policy).get(serving::status),
        )
        .route("/v1/models/{name}/canary", post(serving::start_canary))
        .route(
            "/v1/models/{name}/canary/resume",
            post(serving::resume_canary),
        )
        .route(
            "/v1/models/{name}/canary/abort",
            post(serving::abort_canary),
        )
        .route("/v1/models/{name}/shadow", put(serving::set_shadow))
        .route("/metrics", get(crate::serving::metrics::metrics))
        .route("/v2/health/live", get(oip::live))
        .route("/v2/health/ready", get(oip::ready))
        .route("/v2/models/{name}", get(oip::model_metadata))
        .route("/v2/models/{name}/ready", get(oip::model_ready))
        .route(
            "/v2/models/{name}/versions/{version}",
            get(oip::version_metadata),
        )
        .route(
            "/v2/models/{name}/versions/{version}/ready",
            get(oip::version_ready),
        );
    // Prediction bodies have their own cap (`serving.max_body_bytes`) and
    // are read whatever their content type (OIP clients send none).
    let body_limit = DefaultBodyLimit::max(state.config.serving.max_body_bytes);
    let api = api
        .route(
            "/v1/models/{name}/predict",
            post(crate::serving::predict::predict).layer(body_limit),
        )
        .route(
            "/v1/models/{name}/feedback",
            post(crate::serving::predict::feedback).layer(body_limit),
        )
        .route(
            "/v2/models/{name}/infer",
            post(oip::infer).layer(body_limit),
        )
        .route(
            "/v2/models/{name}/versions/{version}/infer",
            post(oip::infer_version).layer(body_limit),
        );
    let (api, registered) = api.into_parts();
    let router = api
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authorize,
        ))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(json_limit))
        .with_state(state);
    (router, registered)
}

/// The router under construction, recording every method and path it is
/// given: the same calls as axum's (`.route(path, get(h).post(h2))`), so
/// that a route cannot be served without being listed.
mod listed {
    use crate::state::AppState;
    use axum::extract::DefaultBodyLimit;
    use axum::handler::Handler;
    use axum::routing::MethodRouter;
    use std::sync::Arc;

    type S = Arc<AppState>;

    /// A router and the (method, path) pairs it serves.
    pub(super) struct Listed {
        router: axum::Router<S>,
        registered: Vec<(&'static str, &'static str)>,
    }

    impl Listed {
        pub(super) fn new() -> Listed {
            Listed {
                router: axum::Router::new(),
                registered: Vec::new(),
            }
        }

        /// `axum::Router::route`, recorded.
        pub(super) fn route(mut self, path: &'static str, m: Methods) -> Listed {
            self.router = self.router.route(path, m.router);
            self.registered
                .extend(m.methods.into_iter().map(|method| (method, path)));
            self
        }

        pub(super) fn into_parts(self) -> (axum::Router<S>, Vec<(&'static str, &'static str)>) {
            (self.router, self.registered)
        }
    }

    /// A method router and the methods it answers.
    pub(super) struct Methods {
        router: MethodRouter<S>,
        methods: Vec<&'static str>,
    }

    macro_rules! method {
        ($name:ident, $word:literal) => {
            pub(super) fn $name<H: Handler<T, S>, T: 'static>(handler: H) -> Methods {
                Methods {
                    router: axum::routing::$name(handler),
                    methods: vec![$word],
                }
            }

            impl Methods {
                #[allow(dead_code)]
                pub(super) fn $name<H: Handler<T, S>, T: 'static>(mut self, handler: H) -> Methods {
                    self.router = self.router.$name(handler);
                    self.methods.push($word);
                    self
                }
            }
        };
    }

    method!(get, "GET");
    method!(post, "POST");
    method!(put, "PUT");
    method!(delete, "DELETE");

    impl Methods {
        /// A body limit for these methods.
        pub(super) fn layer(mut self, limit: DefaultBodyLimit) -> Methods {
            self.router = self.router.layer(limit);
            self
        }
    }
}

/// The permission `method path-template` needs, from [`ROUTES`].
pub fn needs(method: &str, template: &str) -> Option<&'static RouteInfo> {
    ROUTES
        .iter()
        .find(|r| r.method == method && r.path == template)
}

/// Runs before every matched route, before its body is read: authenticates
/// the token and checks the role against [`ROUTES`], so that no handler
/// can forget a check and a refused caller learns nothing from how its
/// body would have been parsed. A scoped token is checked here too where
/// the path decides ([`RouteInfo::reach`]); handlers check the rest
/// (aliases, a run's model, a published gate's name) and filter lists.
async fn authorize(
    State(state): State<Arc<AppState>>,
    matched: axum::extract::MatchedPath,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::extract::FromRequestParts;
    use axum::response::IntoResponse;
    let Some(route) = needs(req.method().as_str(), matched.as_str()) else {
        return ApiError::internal(format_args!(
            "route {} {} is not in the access table",
            req.method(),
            matched.as_str()
        ))
        .into_response();
    };
    let Some(permission) = route.needs else {
        return next.run(req).await;
    };
    // The inference protocol's errors are `{"error": "..."}`.
    let oip = matched.as_str().starts_with("/v2/");
    let refuse = |e: ApiError| {
        if oip {
            oip::OipError(e).into_response()
        } else {
            e.into_response()
        }
    };
    let (mut parts, body) = req.into_parts();
    let caller = match crate::auth::Caller::from_request_parts(&mut parts, &state).await {
        Ok(c) => c,
        Err(e) => return refuse(e),
    };
    if let Err(e) = caller.require(permission) {
        return refuse(e);
    }
    // Scope, where the path alone decides it, before any body is read;
    // gates, runs and filtered lists are checked again where the handler
    // knows what they touch.
    if let Err(e) = check_reach(&state, &caller, route, permission, &mut parts).await {
        return refuse(e);
    }
    parts.extensions.insert(caller);
    next.run(axum::extract::Request::from_parts(parts, body))
        .await
}

/// The scope part of [`authorize`] for routes whose path names what they
/// touch.
async fn check_reach(
    state: &AppState,
    caller: &crate::auth::Caller,
    route: &RouteInfo,
    permission: Permission,
    parts: &mut axum::http::request::Parts,
) -> Result<(), ApiError> {
    use axum::extract::FromRequestParts;
    let reach = route.reach();
    if caller.scope == crate::access::Scope::default() {
        return Ok(());
    }
    let name = if matches!(reach, Reach::Model | Reach::Gate) {
        let params = axum::extract::RawPathParams::from_request_parts(parts, &())
            .await
            .map_err(|e| ApiError::bad_request(format!("path: {e}")))?;
        params
            .iter()
            .find(|(k, _)| *k == "name")
            .map(|(_, v)| v.to_string())
    } else {
        None
    };
    match reach {
        Reach::Server => caller.require_unscoped(permission),
        Reach::Model => match name {
            Some(model) => caller.require_model(permission, &model),
            None => Ok(()),
        },
        Reach::Gate => match name {
            Some(gate) if permission == Permission::Read => {
                gates::require_read_gate(state, caller, &gate).await
            }
            Some(gate) => {
                let mut conn = state.db.acquire().await?;
                let judged = gates::judged_by(&mut conn, &gate).await?;
                caller.require_gate(permission, &gate, &judged)
            }
            None => Ok(()),
        },
        Reach::Run | Reach::Filtered | Reach::Shared => Ok(()),
    }
}

async fn not_found(uri: axum::http::Uri) -> axum::response::Response {
    use axum::response::IntoResponse;
    let e = ApiError::not_found(format!("no route for {}", crate::names::show(uri.path())));
    if uri.path().starts_with("/v2/") {
        oip::OipError(e).into_response()
    } else {
        e.into_response()
    }
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError {
        status: axum::http::StatusCode::METHOD_NOT_ALLOWED,
        code: "method_not_allowed",
        message: format!(
            "{method} is not allowed on {}",
            crate::names::show(uri.path())
        ),
        retry_after: None,
    }
}

/// `?limit=&after=` on list endpoints.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    /// At most this many items (1..=500, default 100).
    pub limit: Option<u32>,
    /// The `next` cursor of the previous page.
    pub after: Option<String>,
}

impl Page {
    /// The limit, checked.
    pub fn limit(&self) -> Result<i64, ApiError> {
        match self.limit {
            None => Ok(100),
            Some(n @ 1..=500) => Ok(i64::from(n)),
            Some(n) => Err(ApiError::bad_request(format!(
                "limit {n} is outside 1..=500"
            ))),
        }
    }

    /// The cursor ("" for the first page).
    pub fn after(&self) -> &str {
        self.after.as_deref().unwrap_or("")
    }
}

/// A page of results.
#[derive(Debug, Serialize)]
pub struct Paged<T> {
    /// The items.
    pub items: Vec<T>,
    /// Pass as `after` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

impl<T> Paged<T> {
    /// A page from `limit + 1` fetched items, the cursor taken by `key`.
    pub fn from_fetched(mut items: Vec<T>, limit: i64, key: impl Fn(&T) -> String) -> Paged<T> {
        let more = items.len() as i64 > limit;
        items.truncate(limit as usize);
        let next = if more { items.last().map(key) } else { None };
        Paged { items, next }
    }
}
