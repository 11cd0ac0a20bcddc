//! `GET|POST /api/v1/users`: lists and creates users.

#[tokio::main]
async fn main() -> Result<(), berth::lambda::Error> {
    berth::lambda::main_route(&berth::api::manage::users::USERS).await
}
