//! The address a request came from: see [`crate::web::client_ip`].

pub use crate::web::{client_ip as of, ClientIp};
