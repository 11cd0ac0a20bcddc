//! `PATCH|DELETE /api/v1/registries/{registry}/protection/rules/{rule}`: enables, disables or deletes a protection rule.

berth::route_function!(berth::api::manage::policies::PROTECTION_RULE);
