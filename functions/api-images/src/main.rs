//! `GET /api/v1/registries/{registry}/images`: lists a registry's images.

berth::route_function!(berth::api::manage::registries::IMAGES);
