//! `GET|POST /api/v1/caches`: the image-cache route of the same name.

berth::route_function!(berth::api::manage::caches::CACHES);
