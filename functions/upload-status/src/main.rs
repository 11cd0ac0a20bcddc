//! `GET /v2/<name>/blobs/uploads/<id>`: reports how many bytes an upload session holds.

berth::route_function!(berth::api::uploads::STATUS);
