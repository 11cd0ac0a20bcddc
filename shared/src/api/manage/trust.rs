//! `/api/v1/registries/<registry>/trust`: a registry's image-trust mode (what a pull-only
//! principal's manifest `GET` requires) and the public keys signatures are verified against. The
//! logic lives in [`crate::trust`]; this module reads requests and shapes answers.

use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use super::{grants, object, read_json};
use crate::api::endpoint::{handler, Endpoint, Operation, Port, Rule};
use crate::api::query::{empty, Head};
use crate::api::OciError;
use crate::api::Route;
use crate::app::App;
use crate::body::Response;
use crate::identity::Action;
use crate::storage::ByteStream;
use crate::task::Task;
use crate::trust::settings::{self, StoredKey, TrustMode};
use crate::trust::TrustError;

/// `GET|PUT /api/v1/registries/<registry>/trust`.
pub const TRUST: Endpoint = Endpoint {
    name: "api-trust",
    prefix: "/api/v1",
    suffix: "/registries/{registry}/trust",
    has_repository: false,
    operations: &[
        Operation::read(
            "GET",
            Rule::Role(Action::ViewRegistries),
            "A registry's trust settings: mode (off, any-signature, trusted-keys) and trusted keys",
        ),
        Operation::change(
            "PUT",
            Rule::Role(Action::ManageRegistries),
            "Set what a pull-only principal's manifest GET requires: off, any-signature or trusted-keys",
            200,
        )
        .body("TrustSettings"),
    ],
    ports: &[Port::MetadataWrite],
    handler: handler!("api-trust", Route::ApiTrust { registry } => |app, req, body| {
        trust(app, &req, &registry, body).await
    }),
};

/// `GET|POST /api/v1/registries/<registry>/trust/keys`.
pub const KEYS: Endpoint = Endpoint {
    name: "api-trust-keys",
    prefix: "/api/v1",
    suffix: "/registries/{registry}/trust/keys",
    has_repository: false,
    operations: &[
        Operation::read("GET", Rule::Role(Action::ViewRegistries), "The public keys a registry trusts").paged(),
        Operation::change(
            "POST",
            Rule::Role(Action::ManageRegistries),
            "Trust a public key (PEM of ECDSA P-256 or Ed25519, as cosign.pub); signatures are verified again",
            201,
        )
        .body("TrustKey"),
    ],
    ports: &[Port::MetadataWrite, Port::JobsSend],
    handler: handler!("api-trust-keys", Route::ApiTrustKeys { registry } => |app, req, body| {
        keys(app, &req, &registry, body).await
    }),
};

/// `GET|DELETE /api/v1/registries/<registry>/trust/keys/<id>`.
pub const KEY: Endpoint = Endpoint {
    name: "api-trust-key",
    prefix: "/api/v1",
    suffix: "/registries/{registry}/trust/keys/{key}",
    has_repository: false,
    operations: &[
        Operation::read("GET", Rule::Role(Action::ViewRegistries), "One trusted key"),
        Operation::change(
            "DELETE",
            Rule::Role(Action::ManageRegistries),
            "Stop trusting a key (what only it verified stops passing the gate at once)",
            204,
        ),
    ],
    ports: &[Port::MetadataWrite, Port::JobsSend],
    handler: handler!("api-trust-key", Route::ApiTrustKey { registry, key } => |app, req, body| {
        drop(body);
        one_key(app, &req, &registry, &key).await
    }),
};

/// The body of `PUT …/trust`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrustBody {
    mode: String,
}

/// The body of `POST …/trust/keys`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyBody {
    pem: String,
    #[serde(default)]
    name: Option<String>,
}

/// A registry's trust settings as the API shows them.
#[derive(Debug, Serialize)]
struct TrustView<'a> {
    registry: &'a str,
    mode: TrustMode,
    keys: &'a [StoredKey],
}

/// Refuses a registry that does not exist, and trust settings on an image cache (nothing can be
/// pushed into one, so nothing in it is signed there).
async fn check_registry(app: &App, registry: &str, changing_mode: Option<TrustMode>) -> Result<(), OciError> {
    let Some(reg) = crate::identity::registry::get(app.meta.as_ref(), registry).await? else {
        return Err(TrustError::NotFound(format!("registry {registry:?} does not exist")).into());
    };
    if reg.cache.is_some() && changing_mode.is_some_and(|m| m != TrustMode::Off) {
        return Err(TrustError::Invalid(format!(
            "registry {registry:?} is an image cache: nothing can be signed in it, so it has no trust mode"
        ))
        .into());
    }
    Ok(())
}

/// Queues the jobs that look at the registry's signatures again (its keys changed): one now,
/// and one once every process's cached copy of the keys has expired (a signature pushed
/// meanwhile may have been looked at with the old keys). The change itself is stored: a queue
/// failure is logged, not answered.
async fn refresh_signatures(app: &App, registry: &str) {
    let later = settings::CACHE_TTL + std::time::Duration::from_secs(5);
    let now = app.clock.now();
    // each job redoes what was looked at before its own time
    let secs = i64::try_from(later.as_secs()).unwrap_or(i64::MAX);
    for (delay, at) in [(std::time::Duration::ZERO, now), (later, now.saturating_add(secs))] {
        let job = Task::RefreshSignatures { registry: registry.to_string(), at }.to_job();
        if let Err(e) = app.queue.enqueue(&job, delay).await {
            tracing::warn!(registry, error = %e, "could not queue the re-verification of signatures");
        }
    }
}

/// `GET|PUT …/trust`.
pub async fn trust(app: &App, head: &Head, registry: &str, body: ByteStream) -> Result<Response, OciError> {
    if head.method == Method::PUT {
        let body: TrustBody = read_json(body).await?;
        let mode = TrustMode::parse(&body.mode)?;
        check_registry(app, registry, Some(mode)).await?;
        settings::set_mode(app, registry, mode).await?;
    } else {
        check_registry(app, registry, None).await?;
    }
    let loaded = settings::get(app, registry).await?;
    let view = TrustView { registry, mode: loaded.settings.mode, keys: &loaded.settings.keys };
    object(StatusCode::OK, &view)
}

/// `GET|POST …/trust/keys`.
pub async fn keys(app: &App, head: &Head, registry: &str, body: ByteStream) -> Result<Response, OciError> {
    check_registry(app, registry, None).await?;
    if head.method == Method::POST {
        let body: KeyBody = read_json(body).await?;
        let by = grants(head)?.principal().to_string();
        let stored = settings::add_key(app, registry, &body.pem, body.name, &by).await?;
        refresh_signatures(app, registry).await;
        return object(StatusCode::CREATED, &stored);
    }
    let loaded = settings::get(app, registry).await?;
    super::page_response(head, &loaded.settings.keys, false, |k| k.id.clone())
}

/// `GET|DELETE …/trust/keys/<id>`.
pub async fn one_key(app: &App, head: &Head, registry: &str, id: &str) -> Result<Response, OciError> {
    check_registry(app, registry, None).await?;
    let missing = || TrustError::NotFound(format!("registry {registry:?} trusts no key {id:?}"));
    if head.method == Method::DELETE {
        if !settings::remove_key(app, registry, id).await? {
            return Err(missing().into());
        }
        refresh_signatures(app, registry).await;
        return empty(StatusCode::NO_CONTENT, &[]);
    }
    let loaded = settings::get(app, registry).await?;
    let found = loaded.settings.keys.iter().find(|k| k.id == id).ok_or_else(missing)?;
    object(StatusCode::OK, found)
}
