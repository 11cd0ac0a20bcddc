//! `GET|DELETE /api/v1/images/{image}/artifacts/{digest}`: shows or deletes one artifact.

berth::route_function!(berth::api::manage::artifacts::ARTIFACT);
