//! `GET|PATCH|DELETE /api/v1/registries/{registry}`: shows, changes and deletes one registry.

berth::route_function!(berth::api::manage::registries::REGISTRY);
