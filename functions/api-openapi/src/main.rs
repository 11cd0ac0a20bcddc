//! `GET /api/v1/openapi.json`: serves the management API's OpenAPI document.

#[tokio::main]
async fn main() -> Result<(), berth::lambda::Error> {
    berth::lambda::main_route(&berth::api::manage::openapi::OPENAPI).await
}
