//! `GET|POST /api/v1/users/{user}/keys`: lists and creates a user's access keys.

#[tokio::main]
async fn main() -> Result<(), berth::lambda::Error> {
    berth::lambda::main_route(&berth::api::manage::users::KEYS).await
}
