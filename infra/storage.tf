################################################################################
# Blob bucket
################################################################################

resource "aws_s3_bucket" "blobs" {
  #checkov:skip=CKV_AWS_18:Server access logs need a second bucket per deployment; CloudTrail data events are the audit trail, and every blob read is already authorized and logged by blob-get before the presigned redirect.
  #checkov:skip=CKV_AWS_144:Cross-region replication is a disaster-recovery choice with a second region and bucket per deployment, not a default for a registry whose blobs can be re-pushed.
  #checkov:skip=CKV2_AWS_62:Nothing consumes S3 event notifications: uploads are finalized by the registry itself, which writes DynamoDB in the same request.
  bucket        = coalesce(var.bucket_name, "${var.name}-blobs-${local.account_id}-${local.region}")
  force_destroy = var.bucket_force_destroy
}

resource "aws_s3_bucket_public_access_block" "blobs" {
  bucket = aws_s3_bucket.blobs.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "blobs" {
  bucket = aws_s3_bucket.blobs.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "blobs" {
  bucket = aws_s3_bucket.blobs.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = var.kms_key_arn == null ? "AES256" : "aws:kms"
      kms_master_key_id = var.kms_key_arn
    }
    bucket_key_enabled = var.kms_key_arn != null
  }
}

resource "aws_s3_bucket_versioning" "blobs" {
  # Only while enabled: destroying this resource suspends versioning again.
  count  = var.bucket_versioning ? 1 : 0
  bucket = aws_s3_bucket.blobs.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "blobs" {
  bucket = aws_s3_bucket.blobs.id

  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = var.abort_incomplete_multipart_days
    }
  }

  rule {
    id     = "expire-upload-staging"
    status = "Enabled"

    filter {
      prefix = "uploads/"
    }

    expiration {
      days = var.upload_objects_expiration_days
    }
  }

  rule {
    id     = "expire-noncurrent-versions"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }
  }

  depends_on = [aws_s3_bucket_versioning.blobs]
}

data "aws_iam_policy_document" "blobs_tls_only" {
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.blobs.arn,
      "${aws_s3_bucket.blobs.arn}/*",
    ]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "blobs" {
  bucket = aws_s3_bucket.blobs.id
  policy = data.aws_iam_policy_document.blobs_tls_only.json

  # A bucket policy cannot be set while the public access block is being created.
  depends_on = [aws_s3_bucket_public_access_block.blobs]
}

################################################################################
# Metadata table
################################################################################

locals {
  # The indexes of the DynamoDB adapter's design (shared/src/metadata/dynamodb.rs, module doc):
  # upload sessions are listed by last activity through one sparse, keys-only index.
  table_gsis = [{ name = "uploads_by_updated_at", hash_key = "upload_shard", range_key = "updated_at", range_key_type = "N", projection_type = "KEYS_ONLY" }]

  # Attribute definitions the indexes need (PK and SK are always defined).
  table_gsi_attributes = merge([
    for gsi in local.table_gsis : merge(
      { (gsi.hash_key) = try(gsi.hash_key_type, "S") },
      try(gsi.range_key, null) == null ? {} : { (gsi.range_key) = try(gsi.range_key_type, "S") },
    )
  ]...)
}

resource "aws_dynamodb_table" "metadata" {
  name                        = "${var.name}-metadata"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "PK"
  range_key                   = "SK"
  deletion_protection_enabled = var.table_deletion_protection

  attribute {
    name = "PK"
    type = "S"
  }

  attribute {
    name = "SK"
    type = "S"
  }

  dynamic "attribute" {
    for_each = local.table_gsi_attributes

    content {
      name = attribute.key
      type = attribute.value
    }
  }

  dynamic "global_secondary_index" {
    for_each = { for gsi in local.table_gsis : gsi.name => gsi }

    content {
      name               = global_secondary_index.key
      hash_key           = global_secondary_index.value.hash_key
      range_key          = try(global_secondary_index.value.range_key, null)
      projection_type    = try(global_secondary_index.value.projection_type, "ALL")
      non_key_attributes = try(global_secondary_index.value.non_key_attributes, null)
    }
  }

  ttl {
    attribute_name = "expires_at"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = var.kms_key_arn
  }
}
