//! `GET|POST /auth/token`: the token endpoint of the Docker registry token flow, served by
//! [`crate::access::token_service`].

use super::endpoint::{handler, Endpoint, Operation, Rule};
use super::{OciError, Route};
use crate::access::AccessError;

/// `GET|POST /auth/token`.
pub const TOKEN: Endpoint = Endpoint {
    name: "token",
    prefix: "/auth",
    suffix: "/token",
    has_repository: false,
    operations: &[
        Operation::read("GET", Rule::Public, "Issue a registry token (Basic credentials)"),
        Operation::read("POST", Rule::Public, "Issue a registry token (password grant form)"),
    ],
    ports: &[],
    handler: handler!("token", Route::Token => |app, req, body| {
        // the password grant (a form, no Authorization header) is the web console's login
        let challenge = req.method == http::Method::GET || req.headers.contains_key(http::header::AUTHORIZATION);
        crate::access::token_service::issue(app, &req, body).await.map_err(|e| challenge_basic(e, challenge))
    }),
};

/// A failed login with Basic credentials (or a `GET` without any) is answered with a Basic
/// challenge, so clients ask for credentials. The password grant form (what the web console
/// sends) gets none: a browser would answer a challenge with its own login dialog over the
/// console's.
fn challenge_basic(e: AccessError, challenge: bool) -> OciError {
    let basic = challenge && matches!(e, AccessError::Unauthenticated(_));
    let err = OciError::from(e);
    if basic {
        err.header(http::header::WWW_AUTHENTICATE, "Basic realm=\"berth\"")
    } else {
        err
    }
}
