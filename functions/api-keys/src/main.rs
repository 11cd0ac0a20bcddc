//! `GET|POST /api/v1/users/{user}/keys`: lists and creates a user's access keys.

berth::route_function!(berth::api::manage::users::KEYS);
