//! `PUT /v2/<name>/blobs/uploads/<id>?digest=`: takes an optional last chunk and completes the upload.

berth::route_function!(berth::api::uploads::PUT);
