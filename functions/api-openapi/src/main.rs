//! `GET /api/v1/openapi.json`: serves the management API's OpenAPI document.

berth::route_function!(berth::api::manage::openapi::OPENAPI);
