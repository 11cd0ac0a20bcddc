//! `DELETE /v2/<name>/manifests/<reference>`: deletes a tag, or a manifest with its tags.

#[tokio::main]
async fn main() -> Result<(), berth::lambda::Error> {
    berth::lambda::main_route(&berth::api::manifests::DELETE).await
}
