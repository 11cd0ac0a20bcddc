//! `POST /v2/<name>/blobs/uploads/?digest=|mount=&from=`: opens an upload session, takes a whole blob, or mounts one.

#[tokio::main]
async fn main() -> Result<(), berth::lambda::Error> {
    berth::lambda::main_route(&berth::api::uploads::START).await
}
