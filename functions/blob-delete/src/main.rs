//! `DELETE /v2/<name>/blobs/<digest>`: unlinks a blob from a repository.

#[tokio::main]
async fn main() -> Result<(), berth::lambda::Error> {
    berth::lambda::main_route(&berth::api::blobs::DELETE).await
}
