//! `GET|POST /api/v1/gc/runs`: lists garbage-collection runs or starts one.

#[tokio::main]
async fn main() -> Result<(), berth::lambda::Error> {
    berth::lambda::main_route(&berth::api::manage::gc::GC_RUNS).await
}
