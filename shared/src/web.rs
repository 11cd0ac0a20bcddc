//! Reading a request's head: the query string, headers, path segments and the client's address.
//! A leaf: every layer that looks at a request uses it, and it uses nothing of Berth's.

use std::net::IpAddr;

/// The head of a request (method, URI, headers): what handlers read besides the body.
pub type Head = http::request::Parts;

/// The decoded `key=value` pairs of a request's query string, in order.
pub struct Query(Vec<(String, String)>);

impl Query {
    /// Parses the query of `req`.
    pub fn of(req: &Head) -> Query {
        Query::parse(req.uri.query().unwrap_or(""))
    }

    /// Parses `application/x-www-form-urlencoded` text (a query string or a form body).
    pub fn parse(text: &str) -> Query {
        let pairs = text
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (decode_component(k), decode_component(v))
            })
            .collect();
        Query(pairs)
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Every value of `key` (e.g. repeated `tag=`).
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.0.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect()
    }
}

fn decode_component(s: &str) -> String {
    decode(&s.replace('+', " ")).into_owned()
}

/// Percent-decodes a path segment (clients may escape the `:` of a digest).
pub fn decode(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains('%') {
        return s.into();
    }
    let bytes = s.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned().into()
}

/// A request header as text.
pub fn header_str(req: &Head, name: http::header::HeaderName) -> Option<&str> {
    req.headers.get(name).and_then(|v| v.to_str().ok())
}

/// Request extension holding the client's address, as the transport saw it (the TCP peer under
/// `berth serve`, API Gateway's `sourceIp` under Lambda); never taken from a client-supplied header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// The client address of a request, when the transport recorded one.
pub fn client_ip(head: &Head) -> Option<IpAddr> {
    head.extensions.get::<ClientIp>().map(|c| c.0)
}
