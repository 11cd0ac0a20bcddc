//! `GET /v2/<name>/referrers/<digest>?artifactType=`: lists the manifests whose subject is a digest.

#[tokio::main]
async fn main() -> Result<(), berth::lambda::Error> {
    berth::lambda::main_route(&berth::api::referrers::LIST).await
}
