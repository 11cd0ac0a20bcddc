//! `PATCH /v2/<name>/blobs/uploads/<id>`: appends one chunk to an upload session.

berth::route_function!(berth::api::uploads::PATCH);
