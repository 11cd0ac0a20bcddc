//! `GET /api/v1/images/{image}/artifacts`: lists an image's artifacts.

berth::route_function!(berth::api::manage::artifacts::ARTIFACTS);
