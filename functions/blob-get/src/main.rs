//! `GET|HEAD /v2/<name>/blobs/<digest>`: redirects to the blob store (a presigned URL); HEAD answers size and digest.

berth::route_function!(berth::api::blobs::GET);
