//! `DELETE /v2/<name>/blobs/uploads/<id>`: cancels an upload session and drops its bytes.

#[tokio::main]
async fn main() -> Result<(), berth::lambda::Error> {
    berth::lambda::main_route(&berth::api::uploads::CANCEL).await
}
