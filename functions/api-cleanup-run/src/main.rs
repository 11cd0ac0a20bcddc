//! `GET /api/v1/registries/{registry}/cleanup/runs/{run}`: shows a cleanup run with its decisions.

#[tokio::main]
async fn main() -> Result<(), berth::lambda::Error> {
    berth::lambda::main_route(&berth::api::manage::policies::CLEANUP_RUN).await
}
