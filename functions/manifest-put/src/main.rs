//! `PUT /v2/<name>/manifests/<reference>?tag=`: stores a manifest by tag or digest (optionally with more tags).

#[tokio::main]
async fn main() -> Result<(), berth::lambda::Error> {
    berth::lambda::main_route(&berth::api::manifests::PUT).await
}
