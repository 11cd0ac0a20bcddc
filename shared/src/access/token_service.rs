//! `GET|POST /auth/token`: the Docker registry token endpoint. Basic access-key credentials (or
//! the OAuth2 password grant form) in, a signed JWT out, granting only the requested actions the
//! user's role holds, valid at most the configured lifetime (12 hours at most).

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use serde_json::json;

use super::{login, scope, signing, AccessError};
use crate::app::App;
use crate::auth::jwt::{self, Claims};
use crate::body::Response;
use crate::storage::ByteStream;
use crate::web::Query;

/// The longest token lifetime Berth issues, whatever the settings say.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// The largest form body accepted.
const MAX_FORM_BYTES: usize = 16 * 1024;

/// What a token request asked for.
struct TokenRequest {
    id: String,
    secret: String,
    service: Option<String>,
    scopes: Vec<String>,
}

/// The cache registry a request's `Host` stands for, when it is a mirror host.
pub fn mirror_registry<'a>(app: &'a App, head: &http::request::Parts) -> Option<&'a str> {
    let host = head.headers.get(http::header::HOST).and_then(|h| h.to_str().ok())?;
    app.settings.cache.mirror_for(host)
}

/// Serves one token request.
pub async fn issue(app: &App, head: &http::request::Parts, body: ByteStream) -> Result<Response, AccessError> {
    let request = if head.method == http::Method::POST { from_form(head, body).await? } else { from_query(head)? };
    if let Some(service) = &request.service {
        if service != &app.settings.token_service {
            return Err(AccessError::Invalid(format!(
                "service {service:?} is not this registry's ({:?})",
                app.settings.token_service
            )));
        }
    }
    let mut asked = vec![];
    for s in &request.scopes {
        asked.extend(scope::parse(s)?);
    }
    // on a mirror host, clients name repositories without the cache registry (as the challenge
    // there does): the token is for the repositories the requests will address
    if let Some(registry) = mirror_registry(app, head) {
        for s in asked.iter_mut().filter(|s| s.kind == "repository") {
            s.name = format!("{registry}/{}", s.name);
        }
    }
    let (user, key) = login::verify_key(app, &request.id, &request.secret, head).await?;
    let (granted, refused) = scope::grant(&user, &asked);
    let now = app.clock.now();
    let lifetime = app.settings.token_lifetime.min(MAX_TOKEN_LIFETIME).as_secs() as i64;
    let claims = Claims {
        iss: app.settings.token_issuer.clone(),
        sub: user.name.clone(),
        aud: app.settings.token_service.clone(),
        exp: now + lifetime,
        nbf: now - 5,
        iat: now,
        jti: uuid::Uuid::new_v4().simple().to_string(),
        access: granted,
        refused,
        gen: user.generation,
        kgen: key.generation,
        access_key_id: Some(key.id.clone()),
    };
    let signing = signing::key(app).await?;
    let token = jwt::sign(&signing, &claims).map_err(|e| AccessError::SigningKey(e.to_string()))?;
    let body = json!({
        "token": token,
        "access_token": token,
        "expires_in": lifetime,
        "issued_at": rfc3339(now),
    });
    let bytes = serde_json::to_vec(&body).map_err(|e| AccessError::Invalid(e.to_string()))?;
    http::Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::CACHE_CONTROL, "no-store")
        .body(crate::body::ResponseBody::full(Bytes::from(bytes)))
        .map_err(|e| AccessError::Invalid(e.to_string()))
}

fn from_query(head: &http::request::Parts) -> Result<TokenRequest, AccessError> {
    let q = Query::of(head);
    let (id, secret) = match login::credentials(head)? {
        login::Credentials::Basic { id, secret } => (id, secret),
        _ => return Err(AccessError::Unauthenticated("the token endpoint needs Basic access key credentials".into())),
    };
    Ok(TokenRequest {
        id,
        secret,
        service: q.get("service").map(str::to_string),
        scopes: q.all("scope").into_iter().map(str::to_string).collect(),
    })
}

async fn from_form(head: &http::request::Parts, body: ByteStream) -> Result<TokenRequest, AccessError> {
    let bytes = crate::body::read_capped(body, MAX_FORM_BYTES)
        .await
        .map_err(|e| AccessError::Invalid(format!("token request form: {e}")))?;
    let text = String::from_utf8(bytes.to_vec())
        .map_err(|_| AccessError::Invalid("token request form is not UTF-8".into()))?;
    let form = Query::parse(&text);
    let basic = match login::credentials(head)? {
        login::Credentials::Basic { id, secret } => Some((id, secret)),
        _ => None,
    };
    let (id, secret) = match (form.get("grant_type"), form.get("username"), form.get("password"), basic) {
        (Some("password"), Some(u), Some(p), _) => (u.to_string(), p.to_string()),
        (_, _, _, Some(pair)) => pair,
        _ => {
            return Err(AccessError::Unauthenticated(
                "the token endpoint needs grant_type=password with username and password, or Basic credentials".into(),
            ))
        }
    };
    Ok(TokenRequest {
        id,
        secret,
        service: form.get("service").map(str::to_string),
        scopes: form.all("scope").into_iter().map(str::to_string).collect(),
    })
}

/// `2026-11-24T16:00:00Z` for a Unix time.
pub fn rfc3339(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_478_400), "2026-11-24T00:00:00Z");
        assert_eq!(rfc3339(1_795_536_000), "2026-11-24T16:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
