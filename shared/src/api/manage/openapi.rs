//! `GET /api/v1/openapi.json`: the management API described as OpenAPI 3.1, built from the
//! route table so the document cannot drift from what is served.

use http::StatusCode;
use serde_json::{json, Map, Value};

use crate::api::query::json as json_response;
use crate::api::{OciError, ROUTE_SPECS};
use crate::body::Response;

/// (route, method, summary, request body schema, success status)
const OPERATIONS: &[(&str, &str, &str, Option<&str>, u16)] = &[
    ("api-registries", "GET", "List registries", None, 200),
    ("api-registries", "POST", "Create a registry", Some("CreateRegistry"), 201),
    ("api-registry", "GET", "Show a registry", None, 200),
    ("api-registry", "PATCH", "Change a registry's public access and private networks", Some("ChangeRegistry"), 200),
    ("api-registry", "DELETE", "Delete a registry (force=true deletes its images too)", None, 204),
    ("api-images", "GET", "List a registry's images with artifact count, size, last push and stored bytes", None, 200),
    ("api-image", "DELETE", "Delete an image with all its artifacts and tags", None, 200),
    ("api-artifacts", "GET", "List an image's artifacts", None, 200),
    ("api-artifact", "GET", "Show an artifact: digest, media type, size, platforms, times, tags, referrers", None, 200),
    ("api-artifact", "DELETE", "Delete an artifact and its referrers (refused while an index lists it)", None, 204),
    ("api-tags", "GET", "List an image's tags (q= searches)", None, 200),
    ("api-tag", "PUT", "Point a tag at an artifact of the image", Some("PutTag"), 200),
    ("api-tag", "DELETE", "Delete a tag", None, 204),
    ("api-users", "GET", "List users", None, 200),
    ("api-users", "POST", "Create a user with a role", Some("CreateUser"), 201),
    ("api-user", "GET", "Show a user", None, 200),
    ("api-user", "PATCH", "Change a user's role and registries", Some("ChangeUser"), 200),
    ("api-user", "DELETE", "Delete a user and its access keys", None, 204),
    ("api-keys", "GET", "List a user's access keys", None, 200),
    ("api-keys", "POST", "Create an access key (the secret is returned once)", None, 201),
    ("api-key", "DELETE", "Revoke an access key", None, 204),
    ("api-key-rotate", "POST", "Replace an access key's secret (returned once)", None, 200),
    ("api-audit", "GET", "Read the audit log, oldest first", None, 200),
    ("api-openapi", "GET", "This document", None, 200),
    ("api-cleanup-rules", "GET", "List a registry's image cleanup rules", None, 200),
    ("api-cleanup-rules", "POST", "Add an image cleanup rule (at most 15)", Some("NewCleanupRule"), 201),
    ("api-cleanup-rule", "PATCH", "Enable or disable an image cleanup rule", Some("ToggleRule"), 200),
    ("api-cleanup-rule", "DELETE", "Delete an image cleanup rule", None, 204),
    ("api-cleanup-schedule", "GET", "Show the cleanup cycle: cron (UTC) and next run", None, 200),
    ("api-cleanup-schedule", "PUT", "Set the cleanup cycle (five-field UTC cron)", Some("SetSchedule"), 200),
    ("api-cleanup-schedule", "DELETE", "Remove the cleanup cycle", None, 204),
    ("api-cleanup-runs", "GET", "List cleanup runs, newest first", None, 200),
    ("api-cleanup-runs", "POST", "Start a cleanup run (dry_run: a test run)", Some("StartRun"), 202),
    ("api-cleanup-run", "GET", "Show a cleanup run with its decisions (chunk=K pages them)", None, 200),
    ("api-protection-rules", "GET", "List a registry's image protection rules", None, 200),
    ("api-protection-rules", "POST", "Add an image protection rule (at most 15)", Some("NewProtectionRule"), 201),
    ("api-protection-rule", "PATCH", "Enable or disable an image protection rule", Some("ToggleRule"), 200),
    ("api-protection-rule", "DELETE", "Delete an image protection rule", None, 204),
    ("api-gc-runs", "GET", "List garbage-collection runs, newest first", None, 200),
    ("api-gc-runs", "POST", "Start a garbage-collection run (dry_run=true only counts)", Some("StartRun"), 202),
    ("api-gc-run", "GET", "Show a garbage-collection run", None, 200),
];

/// Listings answered in one page whatever `n` says (a registry has at most 15 rules of a kind).
const UNPAGED: &[&str] = &["api-cleanup-rules", "api-protection-rules", "api-cleanup-schedule", "api-openapi"];

/// Query parameters of one operation besides `n` and `last`.
fn extra_query(route: &str, method: &str) -> Vec<Value> {
    match (route, method) {
        ("api-cleanup-run", "GET") => vec![json!({ "name": "chunk", "in": "query",
            "description": "first decision chunk to return (default 0); the answer's next_chunk is the next one",
            "schema": { "type": "integer", "minimum": 0 } })],
        _ => vec![],
    }
}

fn schemas() -> Value {
    let string = json!({ "type": "string" });
    let cidrs = json!({ "type": "array", "items": { "type": "string", "description": "CIDR, e.g. 10.0.0.0/8" } });
    let roles = json!({ "type": "string", "enum": ["project-admin", "project-member", "service-admin", "service-viewer", "image-uploader"] });
    let registries = json!({ "type": ["array", "null"], "items": { "type": "string" }, "description": "registries the role applies to; null = all" });
    json!({
        "CreateRegistry": { "type": "object", "required": ["name"], "additionalProperties": false, "properties": {
            "name": string, "public_access": { "type": "boolean", "default": true }, "private_networks": cidrs } },
        "ChangeRegistry": { "type": "object", "additionalProperties": false, "properties": {
            "public_access": { "type": "boolean" }, "private_networks": cidrs } },
        "PutTag": { "type": "object", "required": ["digest"], "additionalProperties": false, "properties": { "digest": string } },
        "CreateUser": { "type": "object", "required": ["name", "role"], "additionalProperties": false, "properties": {
            "name": string, "role": roles, "registries": registries } },
        "ChangeUser": { "type": "object", "required": ["role"], "additionalProperties": false, "properties": {
            "role": roles, "registries": registries } },
        "NewCleanupRule": { "type": "object", "required": ["image", "tag", "keep"], "additionalProperties": false, "properties": {
            "image": { "type": "string", "description": "image pattern without the registry (`app/**`, `{web,api}`)" },
            "tag": { "type": "string", "description": "tag pattern (`v*`, `**`)" },
            "tag_mode": { "type": "string", "enum": ["match", "exclude"], "default": "match",
                          "description": "select artifacts with a tag matching the pattern, or with a tag not matching it" },
            "untagged": { "type": "boolean", "default": false, "description": "select untagged artifacts too" },
            "keep": { "type": "string", "pattern": "^(latest-pushed:[0-9]+|latest-pulled:[0-9]+|pushed-within:[0-9]+d|pulled-within:[0-9]+d|always)$",
                      "description": "what the rule keeps among the artifacts it selects" } } },
        "ToggleRule": { "type": "object", "required": ["enabled"], "additionalProperties": false, "properties": {
            "enabled": { "type": "boolean" } } },
        "SetSchedule": { "type": "object", "required": ["cron"], "additionalProperties": false, "properties": {
            "cron": { "type": "string", "description": "minute hour day-of-month month day-of-week, in UTC (`0 3 * * *`)" } } },
        "StartRun": { "type": "object", "additionalProperties": false, "properties": {
            "dry_run": { "type": "boolean", "default": false } } },
        "NewProtectionRule": { "type": "object", "required": ["image", "tag"], "additionalProperties": false, "properties": {
            "image": { "type": "string", "description": "image pattern without the registry" },
            "tag": { "type": "string", "description": "tag pattern" } } },
        "Error": { "type": "object", "properties": { "errors": { "type": "array", "items": { "type": "object",
            "required": ["code", "message", "detail"],
            "properties": { "code": string, "message": string, "detail": {} } } } } },
        "Page": { "type": "object", "required": ["items", "next"], "properties": {
            "items": { "type": "array" }, "next": { "type": ["string", "null"], "description": "pass as last= for the next page" } } }
    })
}

/// The document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for spec in ROUTE_SPECS.iter().filter(|s| s.prefix.starts_with("/api/v1")) {
        let path = if spec.has_repository {
            format!("{}/{{image}}{}", spec.prefix, spec.suffix)
        } else {
            format!("{}{}", spec.prefix, spec.suffix)
        };
        let params: Vec<Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        let mut item = Map::new();
        for (route, method, summary, body, status) in OPERATIONS.iter().filter(|o| o.0 == spec.name) {
            let mut op = json!({
                "operationId": format!("{route}-{}", method.to_lowercase()),
                "summary": summary,
                "parameters": params,
                "responses": {
                    status.to_string(): { "description": "success" },
                    "default": { "description": "error", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }
                }
            });
            if *method == "GET" && !UNPAGED.contains(route) && !path.ends_with('}') {
                op["parameters"] = json!([params.clone(), vec![
                    json!({ "name": "n", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 1000 } }),
                    json!({ "name": "last", "in": "query", "schema": { "type": "string" } }),
                ]].concat());
            }
            let extra = extra_query(route, method);
            if !extra.is_empty() {
                op["parameters"] = json!([params.clone(), extra].concat());
            }
            if let Some(schema) = body {
                op["requestBody"] = json!({ "required": true, "content": { "application/json": {
                    "schema": { "$ref": format!("#/components/schemas/{schema}") } } } });
            }
            item.insert(method.to_lowercase(), op);
        }
        paths.insert(path, Value::Object(item));
    }
    json!({
        "openapi": "3.1.0",
        "info": { "title": "Berth management API", "version": env!("CARGO_PKG_VERSION"),
                  "description": "Registries, images, artifacts, tags, users, access keys, the audit log, image cleanup and protection policies and garbage collection. Authenticate with Basic access key:secret, or a Bearer token from /auth/token requested with scope registry:management:* (registry tokens, scoped to repositories, do not reach this API)." },
        "components": {
            "schemas": schemas(),
            "securitySchemes": { "basic": { "type": "http", "scheme": "basic" }, "bearer": { "type": "http", "scheme": "bearer" } }
        },
        "security": [{ "basic": [] }, { "bearer": [] }],
        "paths": paths
    })
}

/// Serves the document.
pub fn serve() -> Result<Response, OciError> {
    json_response(StatusCode::OK, &document(), &[])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_management_route_and_method_is_documented() {
        let doc = document();
        for spec in ROUTE_SPECS.iter().filter(|s| s.prefix.starts_with("/api/v1")) {
            for m in spec.methods {
                assert!(
                    OPERATIONS.iter().any(|(r, method, ..)| r == &spec.name && method == m),
                    "{} {m} is not documented",
                    spec.name
                );
            }
        }
        assert_eq!(doc["paths"].as_object().map(|p| p.len()), Some(24));
        let run = &doc["paths"]["/api/v1/registries/{registry}/cleanup/runs/{run}"]["get"];
        let names: Vec<&str> =
            run["parameters"].as_array().unwrap().iter().filter_map(|p| p["name"].as_str()).collect();
        assert_eq!(names, ["registry", "run", "chunk"]);
        let schedule = &doc["paths"]["/api/v1/registries/{registry}/cleanup/schedule"]["put"];
        assert_eq!(
            schedule["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/SetSchedule"
        );
        assert!(doc["paths"]["/api/v1/gc/runs"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "last"));
    }
}
