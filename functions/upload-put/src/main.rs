//! `PUT /v2/<name>/blobs/uploads/<id>?digest=`: takes an optional last chunk and completes the upload.

#[tokio::main]
async fn main() -> Result<(), berth::lambda::Error> {
    berth::lambda::main_route(&berth::api::uploads::PUT).await
}
