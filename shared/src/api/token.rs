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
        let get = req.method == http::Method::GET;
        crate::access::token_service::issue(app, &req, body).await.map_err(|e| challenge_basic(e, get))
    }),
};

/// A failed login by `GET` (Basic credentials) is answered with a Basic challenge, so clients ask
/// for credentials. The password grant (`POST`, what the web console sends) gets none: a browser
/// would answer a challenge with its own login dialog over the console's.
fn challenge_basic(e: AccessError, get: bool) -> OciError {
    let basic = get && matches!(e, AccessError::Unauthenticated(_));
    let err = OciError::from(e);
    if basic {
        err.header(http::header::WWW_AUTHENTICATE, "Basic realm=\"berth\"")
    } else {
        err
    }
}
