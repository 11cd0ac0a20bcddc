//! `PUT|DELETE /api/v1/images/{image}/tags/{tag}`: creates, moves or deletes a tag without docker.

berth::route_function!(berth::api::manage::artifacts::TAG);
