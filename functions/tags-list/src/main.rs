//! `GET /v2/<name>/tags/list?n=&last=`: lists a repository's tags, one page at a time.

#[tokio::main]
async fn main() -> Result<(), berth::lambda::Error> {
    berth::lambda::main_route(&berth::api::listing::TAGS_LIST).await
}
