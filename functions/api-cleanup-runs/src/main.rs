//! `GET|POST /api/v1/registries/{registry}/cleanup/runs`: lists cleanup runs or starts one (test run or run now).

berth::route_function!(berth::api::manage::policies::CLEANUP_RUNS);
