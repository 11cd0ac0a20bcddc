//! `GET|POST /api/v1/registries/{registry}/replication-targets`: the replication route of the same name.

berth::route_function!(berth::api::manage::replications::TARGETS);
