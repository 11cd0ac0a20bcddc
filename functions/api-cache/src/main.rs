//! `GET|PATCH|DELETE /api/v1/caches/{cache}`: the image-cache route of the same name.

berth::route_function!(berth::api::manage::caches::CACHE);
