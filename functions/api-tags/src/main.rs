//! `GET /api/v1/images/{image}/tags`: lists and searches an image's tags.

berth::route_function!(berth::api::manage::artifacts::TAGS);
