//! `GET|HEAD /v2/<name>/manifests/<reference>`: serves a manifest's exact bytes, media type and digest.

#[tokio::main]
async fn main() -> Result<(), berth::lambda::Error> {
    berth::lambda::main_route(&berth::api::manifests::GET).await
}
