//! S3 adapter of the BlobStore port (being written).
