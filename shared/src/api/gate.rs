//! What each route needs from the edge: its access [`Need`] and whether it changes credentials
//! (both declared on its [`super::Endpoint`]), and the upload session a `_state` token may stand in for. `access::guard` decides on this
//! [`Gate`] without knowing routes.

use http::Method;

use super::Route;
use crate::access::guard::Gate;
use crate::access::Need;

impl Route {
    /// What the edge checks before this route's handler runs, for `method`.
    pub fn gate(&self, method: &Method) -> Gate<'_> {
        let upload_session = match self {
            Route::UploadPatch { name, id }
            | Route::UploadPut { name, id }
            | Route::UploadStatus { name, id }
            | Route::UploadCancel { name, id } => Some((name, id)),
            _ => None,
        };
        let changes_credentials = self.declaration().operation(method).is_some_and(|o| o.changes_credentials);
        Gate { need: self.need(method), upload_session, changes_credentials }
    }

    /// What `route` needs when called with `method` (its endpoint's rule for that method; a
    /// method the endpoint does not serve needs an administrator, though parsing refuses it first).
    pub fn need(&self, method: &Method) -> Need {
        self.declaration().operation(method).map_or(Need::Admin, |o| o.rule.need(self))
    }
}
