//! `GET|POST /api/v1/registries/{registry}/cleanup/rules`: lists or adds image cleanup rules.

berth::route_function!(berth::api::manage::policies::CLEANUP_RULES);
