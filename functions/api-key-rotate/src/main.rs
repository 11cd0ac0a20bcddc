//! `POST /api/v1/users/{user}/keys/{key}/rotate`: replaces an access key's secret.

berth::route_function!(berth::api::manage::users::KEY_ROTATE);
