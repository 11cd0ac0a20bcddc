//! `GET /api/v1/openapi.json`: the management API described as OpenAPI 3.1, built from the
//! route table so the document cannot drift from what is served.

use http::StatusCode;
use serde_json::{json, Map, Value};

use crate::api::endpoint::{handler, Endpoint, Operation, Rule};
use crate::api::query::json as json_response;
use crate::api::{OciError, Route, DECLARATIONS};
use crate::body::Response;

/// `GET /api/v1/openapi.json`.
pub const OPENAPI: Endpoint = Endpoint {
    name: "api-openapi",
    prefix: "/api/v1",
    suffix: "/openapi.json",
    has_repository: false,
    operations: &[Operation::read("GET", Rule::Public, "This document")],
    ports: &[],
    handler: handler!("api-openapi", Route::ApiOpenApi => |app, req, body| serve()),
};

fn schemas() -> Value {
    let string = json!({ "type": "string" });
    let cache_kinds = json!({ "type": "string",
        "enum": ["ncr", "ecr", "acr", "gcr", "docker-hub", "docker-registry", "harbor", "quay"] });
    let cidrs = json!({ "type": "array", "items": { "type": "string", "description": "CIDR, e.g. 10.0.0.0/8" } });
    let roles = json!({ "type": "string", "enum": ["project-admin", "project-member", "service-admin", "service-viewer", "image-uploader"] });
    let registries = json!({ "type": ["array", "null"], "items": { "type": "string" }, "description": "registries the role applies to; null = all" });
    let names: Vec<&str> = crate::events::EventType::SUBSCRIBABLE.iter().map(|t| t.as_str()).collect();
    let event_types =
        json!({ "type": "array", "items": { "type": "string", "enum": names }, "description": "default: every type" });
    let trigger = json!({ "type": "object", "required": ["type"], "additionalProperties": false,
        "description": "when it runs (default manual); `event`: every push after the policy exists",
        "properties": {
            "type": { "type": "string", "enum": ["manual", "event", "schedule"] },
            "cron": { "type": "string", "description": "with `schedule`: minute hour day-of-month month day-of-week, in UTC" } } });
    json!({
        "CreateRegistry": { "type": "object", "required": ["name"], "additionalProperties": false, "properties": {
            "name": string, "public_access": { "type": "boolean", "default": true }, "private_networks": cidrs,
            "cache": { "type": "string", "description": "an image cache: the registry becomes its pull-only cache-type registry" } } },
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
        "NewWebhook": { "type": "object", "required": ["name", "url"], "additionalProperties": false, "properties": {
            "name": { "type": "string", "description": "1-64 letters, digits, spaces, '.', '_', '-'; unique in its scope" },
            "description": string,
            "url": { "type": "string", "description": "http(s) target; refused when it resolves to a non-public address not in BERTH_OUTBOUND_ALLOW" },
            "type": { "type": "string", "enum": ["http", "slack"], "default": "http" },
            "events": event_types.clone(),
            "format": { "type": "string", "enum": ["default", "cloudevents"], "default": "default" },
            "auth_header": { "type": "string", "description": "sent as Authorization; stored encrypted, never returned" },
            "enabled": { "type": "boolean", "default": true },
            "skip_tls_verify": { "type": "boolean", "default": false } } },
        "WebhookPatch": { "type": "object", "additionalProperties": false, "properties": {
            "name": string, "description": string, "url": string,
            "type": { "type": "string", "enum": ["http", "slack"] },
            "events": event_types,
            "format": { "type": "string", "enum": ["default", "cloudevents"] },
            "auth_header": { "type": "string", "description": "\"\" removes it" },
            "enabled": { "type": "boolean" }, "skip_tls_verify": { "type": "boolean" },
            "rotate_secret": { "type": "boolean", "description": "issue a new signing secret, shown in the answer once" } } },
        "NewImageCache": { "type": "object", "required": ["name", "type", "url"], "additionalProperties": false, "properties": {
            "name": { "type": "string", "description": "1-63 lowercase letters, digits and single '.', '_' or '-' separators" },
            "type": cache_kinds.clone(),
            "url": { "type": "string", "description": "the source's base URL; ports 80 and 443 (BERTH_CACHE_SOURCE_PORTS allows more); refused when it resolves to a non-public address not in BERTH_OUTBOUND_ALLOW" },
            "access_id": { "type": "string", "description": "user name, access key id, IAM key id (ecr), _json_key (gcr) or json_file (quay)" },
            "access_secret": { "type": "string", "description": "password, secret key, service-account JSON (gcr) or {\"account_name\", \"docker_cli_password\"} (quay); stored encrypted, never returned" },
            "skip_tls_verify": { "type": "boolean", "default": false },
            "description": string } },
        "ScanSettings": { "type": "object", "additionalProperties": false, "properties": {
            "scan_on_push": { "type": "boolean", "default": false, "description": "scan each artifact when it is pushed (not for _all)" },
            "prevent_pull": { "type": ["string", "null"], "enum": ["Negligible", "Low", "Medium", "High", "Critical", null],
                "description": "refuse manifest GETs of artifacts with a non-allowlisted vulnerability at or above this (not for _all)" },
            "allowlist": { "type": ["object", "null"], "additionalProperties": false, "required": ["ids"],
                "description": "the registry's own CVE allowlist, replacing the common one (_all: the common one); null = use the common one",
                "properties": {
                    "ids": { "type": "string", "description": "vulnerability ids separated by commas or line breaks" },
                    "expires_at": { "type": ["integer", "null"], "description": "Unix time after which the list no longer applies" } } },
            "schedule": { "type": ["string", "null"], "description": "_all only: scan every artifact none, hourly, daily (00:00 UTC), weekly (Saturday 00:00 UTC) or on a five-field UTC cron expression" } } },
        "TrustSettings": { "type": "object", "required": ["mode"], "additionalProperties": false, "properties": {
            "mode": { "type": "string", "enum": ["off", "any-signature", "trusted-keys"],
                "description": "what a manifest GET by a principal that may not push requires: nothing, a signature of any shape, or one that verifies under a trusted key" } } },
        "TrustKey": { "type": "object", "required": ["pem"], "additionalProperties": false, "properties": {
            "pem": { "type": "string", "description": "a PEM PUBLIC KEY of ECDSA P-256 or Ed25519 (cosign.pub as cosign generate-key-pair writes it)" },
            "name": { "type": "string", "description": "a name for people, 1-128 characters" } } },
        "ImageCachePatch": { "type": "object", "additionalProperties": false, "properties": {
            "type": cache_kinds, "url": string,
            "access_id": { "type": "string", "description": "\"\" removes it and the secret" },
            "access_secret": string, "skip_tls_verify": { "type": "boolean" }, "description": string } },
        "NewReplicationTarget": { "type": "object", "required": ["name", "url"], "additionalProperties": false, "properties": {
            "name": { "type": "string", "description": "1-64 letters, digits, spaces, '.', '_', '-'; unique in its scope" },
            "description": string,
            "kind": { "type": "string", "enum": ["berth", "registry"], "default": "registry" },
            "url": { "type": "string", "description": "the registry's base URL (no /v2); refused when it resolves to a non-public address not in BERTH_OUTBOUND_ALLOW" },
            "username": { "type": "string", "description": "user name or access key id" },
            "password": { "type": "string", "description": "password or secret key; stored encrypted, never returned" },
            "skip_tls_verify": { "type": "boolean", "default": false },
            "chunk_bytes": { "type": "integer", "minimum": 1048576, "maximum": 67108864, "default": 8388608,
                             "description": "size of one upload PATCH" } } },
        "ReplicationTargetPatch": { "type": "object", "additionalProperties": false, "properties": {
            "name": string, "description": string, "url": string,
            "kind": { "type": "string", "enum": ["berth", "registry"] },
            "username": { "type": "string", "description": "\"\" removes it" },
            "password": { "type": "string", "description": "\"\" removes it" },
            "skip_tls_verify": { "type": "boolean" },
            "chunk_bytes": { "type": "integer", "minimum": 1048576, "maximum": 67108864 } } },
        "NewReplication": { "type": "object", "required": ["name", "target"], "additionalProperties": false, "properties": {
            "name": { "type": "string", "description": "1-64 letters, digits, spaces, '.', '_', '-'; unique in the registry" },
            "description": string,
            "target": { "type": "string", "description": "a target id of this registry or of _all" },
            "destination": { "type": "string", "description": "repository prefix at the target; default: this registry's name" },
            "name_filter": { "type": "string", "description": "image pattern without the registry (`*`, `**`, `?`, `{a,b}`); empty: all" },
            "tag_filter": { "type": "string", "description": "tag pattern; empty: all" },
            "tag_filter_mode": { "type": "string", "enum": ["match", "exclude"], "default": "match" },
            "trigger": trigger.clone(),
            "override": { "type": "boolean", "default": true, "description": "overwrite a tag that points elsewhere at the target" },
            "enabled": { "type": "boolean", "default": true } } },
        "ReplicationPatch": { "type": "object", "additionalProperties": false, "properties": {
            "name": string, "description": string, "target": string, "destination": string,
            "name_filter": string, "tag_filter": string,
            "tag_filter_mode": { "type": "string", "enum": ["match", "exclude"] },
            "trigger": trigger,
            "override": { "type": "boolean" }, "enabled": { "type": "boolean" } } },
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
    for endpoint in DECLARATIONS.iter().filter(|e| e.prefix.starts_with("/api/v1")) {
        let path = endpoint.path_template();
        let params: Vec<Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        let mut item = Map::new();
        for operation in endpoint.operations {
            let method = operation.method;
            let mut parameters = params.clone();
            if operation.paged {
                parameters.push(json!({ "name": "n", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 1000 } }));
                parameters.push(json!({ "name": "last", "in": "query", "schema": { "type": "string" } }));
            }
            for (name, description) in operation.query {
                parameters.push(json!({ "name": name, "in": "query", "description": description,
                    "schema": { "type": "integer", "minimum": 0 } }));
            }
            let mut op = json!({
                "operationId": format!("{}-{}", endpoint.name, method.to_lowercase()),
                "summary": operation.summary,
                "parameters": parameters,
                "responses": {
                    operation.success.to_string(): { "description": "success" },
                    "default": { "description": "error", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }
                }
            });
            if let Some(schema) = operation.body {
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
        for endpoint in DECLARATIONS.iter().filter(|e| e.prefix.starts_with("/api/v1")) {
            for operation in endpoint.operations {
                let op = &doc["paths"][endpoint.path_template()][operation.method.to_lowercase()];
                assert!(
                    !operation.summary.is_empty() && op["summary"] == operation.summary,
                    "{} {}",
                    endpoint.name,
                    operation.method
                );
            }
        }
        assert_eq!(doc["paths"].as_object().map(|p| p.len()), Some(44));
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
