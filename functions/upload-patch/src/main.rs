//! `PATCH /v2/<name>/blobs/uploads/<id>`: appends one chunk to an upload session.

#[tokio::main]
async fn main() -> Result<(), berth::lambda::Error> {
    berth::lambda::main_route(&berth::api::uploads::PATCH).await
}
