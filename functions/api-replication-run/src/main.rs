//! `POST /api/v1/registries/{registry}/replications/{replication}/run`: the replication route of the same name.

berth::route_function!(berth::api::manage::replications::REPLICATION_RUN);
