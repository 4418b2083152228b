//! The OpenAPI 3.1 document, generated from the route table the router and
//! the access checks are built from, so it cannot list a route that does
//! not exist or miss one that does.

use crate::routes::ROUTES;
use axum::Json;
use serde_json::{Map, Value, json};

/// `GET /v1/openapi.json`.
pub async fn document() -> Json<Value> {
    Json(build())
}

/// Builds the document.
pub fn build() -> Value {
    let mut paths = Map::new();
    for r in ROUTES {
        let entry = paths.entry(r.path.to_string()).or_insert_with(|| json!({}));
        let params: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|p| json!({ "name": p, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        let mut op = json!({
            "operationId": operation_id(r.method, r.path),
            "parameters": params,
            "responses": {
                "2XX": { "description": "success", "content": { "application/json": {} } },
                "4XX": { "description": "a client error naming the problem",
                         "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
            },
        });
        match r.needs {
            Some(p) => {
                op["security"] = json!([{ "bearer": [] }]);
                op["x-airlock-permission"] = json!(p.as_str());
            }
            None => op["security"] = json!([]),
        }
        if let Some(m) = entry.as_object_mut() {
            m.insert(r.method.to_ascii_lowercase(), op);
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": { "title": "airlock control plane", "version": env!("CARGO_PKG_VERSION") },
        "paths": paths,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": { "error": { "type": "object", "required": ["code", "message"],
                        "properties": { "code": { "type": "string" }, "message": { "type": "string" } } } }
                }
            }
        }
    })
}

fn operation_id(method: &str, path: &str) -> String {
    let mut id = method.to_ascii_lowercase();
    for seg in path.split('/').filter(|s| !s.is_empty() && *s != "v1") {
        id.push('_');
        id.extend(
            seg.chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
                .map(|c| if c == '-' { '_' } else { c }),
        );
    }
    id
}
