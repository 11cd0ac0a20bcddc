//! `GET|PATCH|DELETE /api/v1/registries/{registry}/replication-targets/{target}`: the replication route of the same name.

berth::route_function!(berth::api::manage::replications::TARGET);
