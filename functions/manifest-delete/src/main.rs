//! `DELETE /v2/<name>/manifests/<reference>`: deletes a tag, or a manifest with its tags.

berth::route_function!(berth::api::manifests::DELETE);
