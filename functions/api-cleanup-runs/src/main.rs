//! `GET|POST /api/v1/registries/{registry}/cleanup/runs`: lists cleanup runs or starts one (test run or run now).

#[tokio::main]
async fn main() -> Result<(), berth::lambda::Error> {
    berth::lambda::main_route(&berth::api::manage::policies::CLEANUP_RUNS).await
}
