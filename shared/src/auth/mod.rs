//! Authentication primitives: secret hashing and signed registry tokens.

pub mod jwt;
pub mod secret;
