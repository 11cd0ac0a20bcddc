//! `GET /api/v1/registries/{registry}/cleanup/runs/{run}`: shows a cleanup run with its decisions.

berth::route_function!(berth::api::manage::policies::CLEANUP_RUN);
