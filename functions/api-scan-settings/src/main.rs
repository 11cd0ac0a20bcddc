//! `GET|PUT /api/v1/registries/{registry}/scan-settings`: the scan-settings route of the same name.

berth::route_function!(berth::api::manage::scans::SETTINGS);
