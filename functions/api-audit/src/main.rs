//! `GET /api/v1/audit`: reads the audit log.

berth::route_function!(berth::api::manage::audit::AUDIT);
