//! `PATCH|DELETE /api/v1/registries/{registry}/cleanup/rules/{rule}`: enables, disables or deletes a cleanup rule.

berth::route_function!(berth::api::manage::policies::CLEANUP_RULE);
