//! `GET|DELETE /api/v1/registries/{registry}/trust/keys/{key}`: the trust-key route of the same name.

berth::route_function!(berth::api::manage::trust::KEY);
