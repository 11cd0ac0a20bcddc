//! `DELETE /api/v1/users/{user}/keys/{key}`: revokes an access key.

#[tokio::main]
async fn main() -> Result<(), berth::lambda::Error> {
    berth::lambda::main_route(&berth::api::manage::users::KEY).await
}
