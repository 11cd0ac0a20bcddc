//! `GET|POST /api/v1/registries/{registry}/protection/rules`: lists or adds image protection rules.

berth::route_function!(berth::api::manage::policies::PROTECTION_RULES);
