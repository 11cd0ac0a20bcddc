//! `GET|HEAD /v2/<name>/blobs/<digest>`: redirects to the blob store (a presigned URL); HEAD answers size and digest.

#[tokio::main]
async fn main() -> Result<(), berth::lambda::Error> {
    berth::lambda::main_route(&berth::api::blobs::GET).await
}
