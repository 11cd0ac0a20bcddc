//! `GET /api/v1/gc/runs/{run}`: shows a garbage-collection run.

berth::route_function!(berth::api::manage::gc::GC_RUN);
