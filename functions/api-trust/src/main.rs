//! `GET|PUT /api/v1/registries/{registry}/trust`: the trust route of the same name.

berth::route_function!(berth::api::manage::trust::TRUST);
