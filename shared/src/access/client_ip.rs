//! The address a request came from, as the transport saw it (the TCP peer under `berth serve`,
//! API Gateway's `sourceIp` under Lambda). Never taken from a client-supplied header.

use std::net::IpAddr;

/// Request extension holding the client's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// The client address of a request, when the transport recorded one.
pub fn of(head: &http::request::Parts) -> Option<IpAddr> {
    head.extensions.get::<ClientIp>().map(|c| c.0)
}
