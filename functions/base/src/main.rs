//! `GET|HEAD /v2/`: answers 200 so clients know this is an OCI registry (API version check).

berth::route_function!(berth::api::listing::BASE);
