//! `GET|PUT|DELETE /api/v1/registries/{registry}/cleanup/schedule`: shows, sets or removes the cleanup cycle.

berth::route_function!(berth::api::manage::policies::CLEANUP_SCHEDULE);
