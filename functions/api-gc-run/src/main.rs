//! `GET /api/v1/gc/runs/{run}`: shows a garbage-collection run.

#[tokio::main]
async fn main() -> Result<(), berth::lambda::Error> {
    berth::lambda::main_route(&berth::api::manage::gc::GC_RUN).await
}
