//! `GET /api/v1/registries/{registry}/replications/{replication}/executions/{execution}/tasks`: the replication route of the same name.

berth::route_function!(berth::api::manage::replications::TASKS);
