//! `GET|POST /auth/token`: issues registry tokens (Docker token flow) for access-key credentials.

#[tokio::main]
async fn main() -> Result<(), berth::lambda::Error> {
    berth::lambda::main_route(&berth::api::token::TOKEN).await
}
