//! `GET /v2/_catalog?n=&last=`: lists repositories, one page at a time.

berth::route_function!(berth::api::listing::CATALOG);
