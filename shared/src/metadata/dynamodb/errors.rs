//! SDK errors, retries and expression names.

#[allow(unused_imports)]
use super::*;

// --- errors ---

pub(super) fn sdk_error<E, R>(operation: &str, e: SdkError<E, R>) -> MetadataError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    MetadataError::Backend(format!("DynamoDB {operation} failed: {}", DisplayErrorContext(&e)))
}

pub(super) fn build_error(e: BuildError) -> MetadataError {
    MetadataError::Backend(format!("DynamoDB request could not be built: {e}"))
}

pub(super) fn service_code<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> Option<&str> {
    e.as_service_error().and_then(ProvideErrorMetadata::code)
}

pub(super) fn is_condition_failure<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    service_code(e) == Some("ConditionalCheckFailedException")
}

/// Sleeps before attempt `attempt` (1-based): exponential from 10 ms, capped near 1 s, jittered.
pub(super) async fn backoff(attempt: u32) {
    let cap = (10u64 << attempt.min(7)).min(1_000);
    let jitter = u64::try_from(uuid::Uuid::new_v4().as_u128() % 1_000).unwrap_or(500);
    tokio::time::sleep(Duration::from_millis(cap / 2 + cap * jitter / 2_000)).await;
}

/// Runs a single-item write again while it meets `TransactionConflictException` (an item that
/// an ongoing transaction holds).
pub(super) async fn retry_conflicts<T, E, R, F, Fut>(mut call: F) -> Result<T, SdkError<E, R>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SdkError<E, R>>>,
    E: ProvideErrorMetadata,
{
    let mut attempt = 0;
    loop {
        match call().await {
            Err(e) if attempt + 1 < MAX_ATTEMPTS && service_code(&e) == Some("TransactionConflictException") => {
                attempt += 1;
                backoff(attempt).await;
            }
            result => return result,
        }
    }
}

/// Names `#name` placeholders in expressions after themselves (`#size` → `size`).
pub(super) fn expression_names(expressions: &[Option<&str>]) -> Option<HashMap<String, String>> {
    let mut names = HashMap::new();
    for expr in expressions.iter().flatten() {
        let bytes = expr.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] != b'#' {
                i += 1;
                continue;
            }
            let start = i;
            i += 1;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            if i > start + 1 {
                names.insert(expr[start..i].to_string(), expr[start + 1..i].to_string());
            }
        }
    }
    (!names.is_empty()).then_some(names)
}
