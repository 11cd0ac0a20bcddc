//! `GET /api/v1/registries/{registry}/webhooks/{webhook}/deliveries`: the webhook route of the same name.

berth::route_function!(berth::api::manage::webhooks::WEBHOOK_DELIVERIES);
