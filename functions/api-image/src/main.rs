//! `DELETE /api/v1/images/{image}`: deletes a whole image.

berth::route_function!(berth::api::manage::artifacts::IMAGE);
