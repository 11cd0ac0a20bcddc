//! `GET /v2/<name>/blobs/uploads/<id>`: reports how many bytes an upload session holds.

#[tokio::main]
async fn main() -> Result<(), berth::lambda::Error> {
    berth::lambda::main_route(&berth::api::uploads::STATUS).await
}
