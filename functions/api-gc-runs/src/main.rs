//! `GET|POST /api/v1/gc/runs`: lists garbage-collection runs or starts one.

berth::route_function!(berth::api::manage::gc::GC_RUNS);
