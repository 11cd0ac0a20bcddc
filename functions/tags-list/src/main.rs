//! `GET /v2/<name>/tags/list?n=&last=`: lists a repository's tags, one page at a time.

berth::route_function!(berth::api::listing::TAGS_LIST);
