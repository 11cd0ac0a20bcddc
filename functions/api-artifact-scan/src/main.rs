//! `GET|POST|DELETE /api/v1/images/{name}/artifacts/{digest}/scan`: the artifact-scan route of the same name.

berth::route_function!(berth::api::manage::scans::SCAN);
