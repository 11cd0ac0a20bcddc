//! `DELETE /v2/<name>/blobs/<digest>`: unlinks a blob from a repository.

berth::route_function!(berth::api::blobs::DELETE);
