//! SQS adapter of the JobQueue port (being written).
