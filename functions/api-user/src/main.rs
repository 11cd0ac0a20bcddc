//! `GET|PATCH|DELETE /api/v1/users/{user}`: shows, changes the role of, and deletes one user.

#[tokio::main]
async fn main() -> Result<(), berth::lambda::Error> {
    berth::lambda::main_route(&berth::api::manage::users::USER).await
}
