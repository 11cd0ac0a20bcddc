//! `GET /v2/_catalog?n=&last=`: lists repositories, one page at a time.

#[tokio::main]
async fn main() -> Result<(), berth::lambda::Error> {
    berth::lambda::main_route(&berth::api::listing::CATALOG).await
}
