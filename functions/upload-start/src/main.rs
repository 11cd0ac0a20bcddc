//! `POST /v2/<name>/blobs/uploads/?digest=|mount=&from=`: opens an upload session, takes a whole blob, or mounts one.

berth::route_function!(berth::api::uploads::START);
