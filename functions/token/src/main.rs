//! `GET|POST /auth/token`: issues registry tokens (Docker token flow) for access-key credentials.

berth::route_function!(berth::api::token::TOKEN);
