//! `GET|POST /api/v1/users`: lists and creates users.

berth::route_function!(berth::api::manage::users::USERS);
