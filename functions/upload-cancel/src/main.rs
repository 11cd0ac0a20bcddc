//! `DELETE /v2/<name>/blobs/uploads/<id>`: cancels an upload session and drops its bytes.

berth::route_function!(berth::api::uploads::CANCEL);
