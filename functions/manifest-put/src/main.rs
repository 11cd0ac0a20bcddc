//! `PUT /v2/<name>/manifests/<reference>?tag=`: stores a manifest by tag or digest (optionally with more tags).

berth::route_function!(berth::api::manifests::PUT);
