//! `DELETE /api/v1/users/{user}/keys/{key}`: revokes an access key.

berth::route_function!(berth::api::manage::users::KEY);
