//! `POST /api/v1/registries/{registry}/webhooks/{webhook}/test`: the webhook route of the same name.

berth::route_function!(berth::api::manage::webhooks::WEBHOOK_TEST);
