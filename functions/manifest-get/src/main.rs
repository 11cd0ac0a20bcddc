//! `GET|HEAD /v2/<name>/manifests/<reference>`: serves a manifest's exact bytes, media type and digest.

berth::route_function!(berth::api::manifests::GET);
