//! DynamoDB adapter of the MetadataStore port (being written).
