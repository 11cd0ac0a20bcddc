//! `GET|POST /api/v1/registries`: lists and creates registries.

berth::route_function!(berth::api::manage::registries::REGISTRIES);
