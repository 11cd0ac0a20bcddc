//! `POST /api/v1/users/{user}/keys/{key}/rotate`: replaces an access key's secret.

#[tokio::main]
async fn main() -> Result<(), berth::lambda::Error> {
    berth::lambda::main_route(&berth::api::manage::users::KEY_ROTATE).await
}
