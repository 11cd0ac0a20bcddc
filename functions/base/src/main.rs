//! `GET|HEAD /v2/`: answers 200 so clients know this is an OCI registry (API version check).

#[tokio::main]
async fn main() -> Result<(), berth::lambda::Error> {
    berth::lambda::main_route(&berth::api::listing::BASE).await
}
