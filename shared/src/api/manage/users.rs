//! `/api/v1/users…`: users with their role and registries, and their access keys (the secret
//! is in the answer to create and rotate only).

use http::StatusCode;
use serde::{Deserialize, Serialize};

use super::{grants, invalid, object, page_request, page_response, read_json};
use crate::api::endpoint::{handler, Endpoint, Operation, Port, Rule};
use crate::api::query::{empty, Head};
use crate::api::Route;
use crate::api::{ErrorCode, OciError};
use crate::app::App;
use crate::body::Response;
use crate::identity::{key, user, AccessKey, Role, User};
use crate::storage::ByteStream;

/// `GET|POST /api/v1/users`.
pub const USERS: Endpoint = Endpoint {
    name: "api-users",
    prefix: "/api/v1",
    suffix: "/users",
    has_repository: false,
    operations: &[
        Operation::read("GET", Rule::Admin, "List users").paged(),
        Operation::change("POST", Rule::Admin, "Create a user with a role", 201)
            .body("CreateUser")
            .changes_credentials(),
    ],
    ports: &[Port::MetadataWrite],
    handler: handler!("api-users", Route::ApiUsers => |app, req, body| {
        if req.method == http::Method::GET { list(app, &req).await } else { create(app, &req, body).await }
    }),
};

/// `GET|PATCH|DELETE /api/v1/users/<user>`.
pub const USER: Endpoint = Endpoint {
    name: "api-user",
    prefix: "/api/v1",
    suffix: "/users/{user}",
    has_repository: false,
    operations: &[
        Operation::read("GET", Rule::SelfOrAdmin, "Show a user"),
        Operation::change("PATCH", Rule::Admin, "Change a user's role and registries", 200)
            .body("ChangeUser")
            .changes_credentials(),
        Operation::change("DELETE", Rule::Admin, "Delete a user and its access keys", 204),
    ],
    ports: &[Port::MetadataWrite],
    handler: handler!("api-user", Route::ApiUser { user } => |app, req, body| match req.method {
        http::Method::GET => show(app, &user).await,
        http::Method::PATCH => change(app, &user, body).await,
        _ => delete(app, &req, &user).await,
    }),
};

/// `GET|POST /api/v1/users/<user>/keys`.
pub const KEYS: Endpoint = Endpoint {
    name: "api-keys",
    prefix: "/api/v1",
    suffix: "/users/{user}/keys",
    has_repository: false,
    operations: &[
        Operation::read("GET", Rule::SelfOrAdmin, "List a user's access keys").paged(),
        Operation::change("POST", Rule::SelfOrAdmin, "Create an access key (the secret is returned once)", 201)
            .changes_credentials(),
    ],
    ports: &[Port::MetadataWrite],
    handler: handler!("api-keys", Route::ApiKeys { user } => |app, req, body| {
        if req.method == http::Method::GET { keys(app, &req, &user).await } else { create_key(app, &user).await }
    }),
};

/// `DELETE /api/v1/users/<user>/keys/<key>`.
pub const KEY: Endpoint = Endpoint {
    name: "api-key",
    prefix: "/api/v1",
    suffix: "/users/{user}/keys/{key}",
    has_repository: false,
    operations: &[Operation::change("DELETE", Rule::SelfOrAdmin, "Revoke an access key", 204)],
    ports: &[Port::MetadataWrite],
    handler: handler!("api-key", Route::ApiKey { user, key } => |app, req, body| revoke_key(app, &user, &key).await),
};

/// `POST /api/v1/users/<user>/keys/<key>/rotate`.
pub const KEY_ROTATE: Endpoint = Endpoint {
    name: "api-key-rotate",
    prefix: "/api/v1",
    suffix: "/users/{user}/keys/{key}/rotate",
    has_repository: false,
    operations: &[Operation::change("POST", Rule::SelfOrAdmin, "Replace an access key's secret (returned once)", 200)
        .changes_credentials()],
    ports: &[Port::MetadataWrite],
    handler: handler!("api-key-rotate", Route::ApiKeyRotate { user, key } => |app, req, body| {
        rotate_key(app, &user, &key).await
    }),
};

/// The body of `POST /api/v1/users`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateUser {
    name: String,
    role: String,
    #[serde(default)]
    registries: Option<Vec<String>>,
}

/// The body of `PATCH /api/v1/users/<name>`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeUser {
    role: String,
    #[serde(default)]
    registries: Option<Vec<String>>,
}

fn role_of(s: &str) -> Result<Role, OciError> {
    Role::parse(s).ok_or_else(|| {
        let all: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
        invalid(format!("role {s:?} is not one of {}", all.join(", ")))
    })
}

/// Checks a role's registry list: absent (every registry) or existing registries.
async fn registries_of(app: &App, list: Option<Vec<String>>) -> Result<Option<Vec<String>>, OciError> {
    match list {
        Some(l) if l.is_empty() => Err(invalid("registries, when given, must name at least one registry")),
        Some(l) => {
            for name in &l {
                if crate::identity::registry::get(app.meta.as_ref(), name).await?.is_none() {
                    return Err(OciError::new(ErrorCode::NotFound, format!("registry {name:?} does not exist")));
                }
            }
            Ok(Some(l))
        }
        None => Ok(None),
    }
}

/// A user as shown (its key ids, never secrets or hashes).
#[derive(Debug, Serialize)]
struct UserView<'a> {
    name: &'a str,
    role: &'a str,
    registries: &'a Option<Vec<String>>,
    access_keys: &'a [String],
    created_at: i64,
    created_by: &'a str,
}

fn view(u: &User) -> UserView<'_> {
    UserView {
        name: &u.name,
        role: u.role.as_str(),
        registries: &u.registries,
        access_keys: &u.keys,
        created_at: u.created_at,
        created_by: &u.created_by,
    }
}

/// `GET /api/v1/users`.
pub async fn list(app: &App, head: &Head) -> Result<Response, OciError> {
    let page = page_request(head)?;
    let (users, more) = user::list(app.meta.as_ref(), page.after.as_deref(), page.limit).await?;
    let views: Vec<UserView<'_>> = users.iter().map(view).collect();
    page_response(head, &views, more, |u| u.name.to_string())
}

/// `POST /api/v1/users`.
pub async fn create(app: &App, head: &Head, body: ByteStream) -> Result<Response, OciError> {
    let req: CreateUser = read_json(body).await?;
    let role = role_of(&req.role)?;
    let registries = registries_of(app, req.registries).await?;
    let who = grants(head)?.principal().to_string();
    let created = user::create(app.meta.as_ref(), &req.name, role, registries, &who, app.clock.now()).await?;
    object(StatusCode::CREATED, &view(&created))
}

/// `GET /api/v1/users/<name>`.
pub async fn show(app: &App, name: &str) -> Result<Response, OciError> {
    let found = user::get(app.meta.as_ref(), name)
        .await?
        .ok_or_else(|| OciError::new(ErrorCode::NotFound, format!("user {name:?} does not exist")))?;
    object(StatusCode::OK, &view(&found))
}

/// `PATCH /api/v1/users/<name>`: a new role and registries.
pub async fn change(app: &App, name: &str, body: ByteStream) -> Result<Response, OciError> {
    let req: ChangeUser = read_json(body).await?;
    let role = role_of(&req.role)?;
    let registries = registries_of(app, req.registries).await?;
    let changed = user::set_role(app.meta.as_ref(), name, role, registries).await?;
    app.access.forget_holders();
    object(StatusCode::OK, &view(&changed))
}

/// `DELETE /api/v1/users/<name>`: the user and its keys; nobody deletes themself.
pub async fn delete(app: &App, head: &Head, name: &str) -> Result<Response, OciError> {
    if grants(head)?.principal() == name {
        return Err(OciError::new(ErrorCode::Conflict, "you cannot delete the user you are logged in as"));
    }
    if user::delete(app.meta.as_ref(), name).await? {
        app.access.forget_holders();
        empty(StatusCode::NO_CONTENT, &[])
    } else {
        Err(OciError::new(ErrorCode::NotFound, format!("user {name:?} does not exist")))
    }
}

/// An access key as shown.
#[derive(Serialize)]
struct KeyView<'a> {
    access_key: &'a str,
    user: &'a str,
    created_at: i64,
    rotated_at: Option<i64>,
    last_used_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret_key: Option<&'a str>,
}

fn key_view<'a>(k: &'a AccessKey, secret: Option<&'a str>) -> KeyView<'a> {
    KeyView {
        access_key: &k.id,
        user: &k.user,
        created_at: k.created_at,
        rotated_at: k.rotated_at,
        last_used_at: k.last_used_at,
        secret_key: secret,
    }
}

/// `GET /api/v1/users/<name>/keys`.
pub async fn keys(app: &App, head: &Head, name: &str) -> Result<Response, OciError> {
    let found = key::list(app.meta.as_ref(), name).await?;
    let views: Vec<KeyView<'_>> = found.iter().map(|k| key_view(k, None)).collect();
    page_response(head, &views, false, |k| k.access_key.to_string())
}

/// `POST /api/v1/users/<name>/keys`: a new key; the secret is shown this once.
pub async fn create_key(app: &App, name: &str) -> Result<Response, OciError> {
    let (created, secret) = key::create(app.meta.as_ref(), name, None, app.clock.now()).await?;
    object(StatusCode::CREATED, &key_view(&created, Some(&secret)))
}

/// `DELETE /api/v1/users/<name>/keys/<key>`.
pub async fn revoke_key(app: &App, name: &str, id: &str) -> Result<Response, OciError> {
    key::revoke(app.meta.as_ref(), name, id).await?;
    if let Ok(mut m) = app.access.verified.lock() {
        m.remove(id);
    }
    app.access.forget_holders();
    empty(StatusCode::NO_CONTENT, &[])
}

/// `POST /api/v1/users/<name>/keys/<key>/rotate`: a new secret, shown this once.
pub async fn rotate_key(app: &App, name: &str, id: &str) -> Result<Response, OciError> {
    let (rotated, secret) = key::rotate(app.meta.as_ref(), name, id, app.clock.now()).await?;
    app.access.forget_holders();
    object(StatusCode::OK, &key_view(&rotated, Some(&secret)))
}
