//! `GET|PATCH|DELETE /api/v1/users/{user}`: shows, changes the role of, and deletes one user.

berth::route_function!(berth::api::manage::users::USER);
