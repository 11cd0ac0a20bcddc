//! `GET /v2/<name>/referrers/<digest>?artifactType=`: lists the manifests whose subject is a digest.

berth::route_function!(berth::api::referrers::LIST);
