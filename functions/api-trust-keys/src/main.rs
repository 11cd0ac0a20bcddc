//! `GET|POST /api/v1/registries/{registry}/trust/keys`: the trust-keys route of the same name.

berth::route_function!(berth::api::manage::trust::KEYS);
