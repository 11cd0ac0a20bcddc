//! `GET|POST /api/v1/registries/{registry}/webhooks`: the webhook route of the same name.

berth::route_function!(berth::api::manage::webhooks::WEBHOOKS);
