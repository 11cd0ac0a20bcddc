################################################################################
# Permissions
#
# Each function gets only the permission sets its handlers use (shared/src/api, registry,
# jobs.rs, and the calls of the S3/DynamoDB/SQS adapters). A route that starts using another
# port (e.g. enqueues a job) adds a set here.
################################################################################

locals {
  # Key layout of the S3 adapter (shared/src/storage/s3.rs): blobs/<algorithm>/<xx>/<hex>,
  # uploads/<id>/... (multipart data and tails of upload sessions).
  blob_objects    = "${aws_s3_bucket.blobs.arn}/blobs/*"
  staging_objects = "${aws_s3_bucket.blobs.arn}/uploads/*"
  table_resources = [aws_dynamodb_table.metadata.arn, "${aws_dynamodb_table.metadata.arn}/index/*"]

  permission_sets = {
    # GetObject also authorizes HeadObject and the presigned GET URLs the function signs.
    blob_read   = { actions = ["s3:GetObject"], resources = [local.blob_objects] }
    blob_write  = { actions = ["s3:PutObject"], resources = [local.blob_objects] }
    blob_delete = { actions = ["s3:DeleteObject"], resources = [local.blob_objects] } # for garbage collection
    # Listing staged keys; also, without ListBucket S3 answers 403 instead of 404 for a missing key.
    bucket_list = { actions = ["s3:ListBucket"], resources = [aws_s3_bucket.blobs.arn] }
    # PutObject also authorizes CreateMultipartUpload, UploadPart(Copy) and CompleteMultipartUpload.
    staging_read    = { actions = ["s3:GetObject"], resources = [local.staging_objects] }
    staging_write   = { actions = ["s3:PutObject"], resources = [local.staging_objects] }
    staging_cleanup = { actions = ["s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"], resources = [local.staging_objects] }
    staging_list    = { actions = ["s3:ListBucketMultipartUploads"], resources = [aws_s3_bucket.blobs.arn] }
    meta_read       = { actions = ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query"], resources = local.table_resources }
    # TransactWriteItems is authorized per item by these actions (ConditionCheckItem for checks):
    # there is no dynamodb:TransactWriteItems IAM action.
    meta_write   = { actions = ["dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem", "dynamodb:ConditionCheckItem"], resources = local.table_resources }
    jobs_send    = { actions = ["sqs:SendMessage"], resources = [aws_sqs_queue.jobs.arn] }
    jobs_consume = { actions = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"], resources = [aws_sqs_queue.jobs.arn] }
    kms          = { actions = ["kms:Decrypt", "kms:GenerateDataKey"], resources = compact([var.kms_key_arn]) }
  }

  # function => permission sets. Keys are exactly local.functions (checked by tests/infra).
  # jobs_send is not listed here for routes: every route whose route table entry says
  # sends_jobs (`berth routes`) gets it below, so a route that starts enqueueing gets the
  # permission when the route table says so.
  # Every route authenticates its request (shared/src/access): it reads users, keys and registries
  # (meta_read) and writes key last-used stamps and the audit log (meta_write; also the signing
  # key on first use, should BERTH_TOKEN_SIGNING_KEY ever be empty). So meta_write on a read-only
  # route writes identity and audit documents; the S3 sets below are what its handler needs.
  function_permissions = {
    "token"           = ["meta_read", "meta_write"]
    "base"            = ["meta_read", "meta_write"]
    "catalog"         = ["meta_read", "meta_write"]
    "tags-list"       = ["meta_read", "meta_write"]
    "manifest-get"    = ["meta_read", "meta_write", "blob_read", "bucket_list"]
    "manifest-put"    = ["meta_read", "meta_write", "blob_read", "bucket_list", "blob_write"]
    "manifest-delete" = ["meta_read", "meta_write"]
    "blob-get"        = ["meta_read", "meta_write", "blob_read", "bucket_list"]
    "blob-delete"     = ["meta_read", "meta_write"] # unlinks only: bytes stay until garbage collection
    "upload-start"    = ["meta_read", "meta_write", "blob_read", "bucket_list", "blob_write", "staging_read", "staging_write", "staging_cleanup", "staging_list"]
    "upload-patch"    = ["meta_read", "meta_write", "bucket_list", "staging_read", "staging_write", "staging_cleanup"]
    "upload-put"      = ["meta_read", "meta_write", "blob_read", "bucket_list", "blob_write", "staging_read", "staging_write", "staging_cleanup", "staging_list"]
    "upload-status"   = ["meta_read", "meta_write"]
    "upload-cancel"   = ["meta_read", "meta_write", "bucket_list", "staging_cleanup", "staging_list"]
    "referrers"       = ["meta_read", "meta_write"]
    # Management API (shared/src/manage). Identity and registry documents live in the table only.
    "api-registries" = ["meta_read", "meta_write"]
    "api-registry"   = ["meta_read", "meta_write"] # delete with force=true deletes images as manifest-delete does
    "api-image"      = ["meta_read", "meta_write"] # deletes manifests and unlinks blobs, as manifest-delete
    # Image and artifact descriptions read manifests and image configs (platforms) from blobs/.
    "api-images"     = ["meta_read", "meta_write", "blob_read"]
    "api-artifacts"  = ["meta_read", "meta_write", "blob_read"]
    "api-artifact"   = ["meta_read", "meta_write", "blob_read"] # GET reads as api-artifacts; DELETE as manifest-delete
    "api-tags"       = ["meta_read", "meta_write"]
    "api-tag"        = ["meta_read", "meta_write"]
    "api-users"      = ["meta_read", "meta_write"]
    "api-user"       = ["meta_read", "meta_write"]
    "api-keys"       = ["meta_read", "meta_write"]
    "api-key"        = ["meta_read", "meta_write"]
    "api-key-rotate" = ["meta_read", "meta_write"]
    "api-audit"      = ["meta_read", "meta_write"]
    "api-openapi"    = ["meta_read", "meta_write"]
    # Cleanup and protection policies, cycles and run records are table documents. Starting a
    # cleanup or garbage-collection run enqueues its job; the job worker executes it.
    "api-cleanup-rules"    = ["meta_read", "meta_write"]
    "api-cleanup-rule"     = ["meta_read", "meta_write"]
    "api-cleanup-schedule" = ["meta_read", "meta_write"] # the cycle is a schedule document job-scheduler fires
    "api-cleanup-runs"     = ["meta_read", "meta_write"]
    "api-cleanup-run"      = ["meta_read", "meta_write"]
    "api-protection-rules" = ["meta_read", "meta_write"]
    "api-protection-rule"  = ["meta_read", "meta_write"]
    "api-gc-runs"          = ["meta_read", "meta_write"]
    "api-gc-run"           = ["meta_read", "meta_write"]
    # expire-uploads, and garbage collection (lists blobs/ and deletes unreferenced blob bytes).
    "job-worker" = ["jobs_consume", "jobs_send", "meta_read", "meta_write", "bucket_list", "staging_cleanup", "staging_list", "blob_delete"]
    # Fires the stored cron schedules (upload expiry, cleanup cycles): reads them and claims each
    # due time with a conditional write before enqueueing its job.
    "job-scheduler" = ["jobs_send", "meta_read", "meta_write"]
  }

  # The customer managed key, when there is one, is needed by everything that touches data.
  function_permissions_with_jobs = {
    for name, sets in local.function_permissions :
    name => try(local.routes[name].sends_jobs, false) ? concat(sets, ["jobs_send"]) : sets
  }
  function_permission_sets = {
    for name, sets in local.function_permissions_with_jobs :
    name => var.kms_key_arn != null && length(sets) > 0 ? concat(sets, ["kms"]) : sets
  }
}

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "function" {
  for_each = local.functions

  name               = "${var.name}-${each.key}"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

data "aws_iam_policy_document" "function" {
  for_each = local.functions

  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.function[each.key].arn}:*"]
  }

  dynamic "statement" {
    for_each = var.enable_xray_tracing ? [1] : []

    content {
      # X-Ray has no resource-level permissions: AWS requires "*" for these two actions.
      sid       = "XRay"
      actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
      resources = ["*"]
    }
  }

  dynamic "statement" {
    for_each = local.function_permission_sets[each.key]

    content {
      sid       = replace(title(replace(statement.value, "_", " ")), " ", "")
      actions   = local.permission_sets[statement.value].actions
      resources = local.permission_sets[statement.value].resources
    }
  }
}

resource "aws_iam_role_policy" "function" {
  for_each = local.functions

  name   = "berth"
  role   = aws_iam_role.function[each.key].id
  policy = data.aws_iam_policy_document.function[each.key].json
}

################################################################################
# Functions
################################################################################

resource "aws_cloudwatch_log_group" "function" {
  #checkov:skip=CKV_AWS_338:Retention is var.log_retention_days (default 30): these are operational request logs; raise it where an audit rule asks for a year.
  for_each = local.functions

  name              = "/aws/lambda/${var.name}-${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
}

resource "aws_lambda_function" "this" {
  #checkov:skip=CKV_AWS_116:Route functions are invoked synchronously by API Gateway (a DLQ only applies to async invokes); job-worker's failures go to the SQS queue's own DLQ, and job-scheduler's EventBridge target retries.
  #checkov:skip=CKV_AWS_117:The functions only call AWS APIs (S3, DynamoDB, SQS, SSM); a VPC attachment would add NAT or endpoint cost and cold-start latency without isolating anything.
  #checkov:skip=CKV_AWS_272:cargo-lambda zips are deployed directly from the build; code signing needs an AWS Signer profile and an S3-staged artifact pipeline, out of scope for this stack.
  for_each = local.functions

  function_name = "${var.name}-${each.key}"
  description   = "Berth ${each.key}"
  role          = aws_iam_role.function[each.key].arn

  runtime       = "provided.al2023"
  handler       = "bootstrap"
  architectures = ["arm64"]

  filename = local.function_artifacts[each.key]
  # Lets `terraform validate` (and plan of unrelated changes) run before the functions are built.
  source_code_hash = fileexists(local.function_artifacts[each.key]) ? filebase64sha256(local.function_artifacts[each.key]) : null

  memory_size                    = each.value.memory_mb
  timeout                        = each.value.timeout_seconds
  reserved_concurrent_executions = coalesce(each.value.reserved_concurrency, -1)
  kms_key_arn                    = var.kms_key_arn

  environment {
    # The keys reach the functions as environment variables (encrypted at rest by Lambda) rather
    # than by an SSM call on every cold start; the gateway reads them as ECS secrets.
    variables = merge(local.berth_environment, {
      BERTH_UPLOAD_TOKEN_KEY  = data.aws_ssm_parameter.upload_token_key.value
      BERTH_TOKEN_SIGNING_KEY = data.aws_ssm_parameter.token_signing_key.value
    })
  }

  tracing_config {
    mode = var.enable_xray_tracing ? "Active" : "PassThrough"
  }

  logging_config {
    log_format = "Text"
    log_group  = aws_cloudwatch_log_group.function[each.key].name
  }

  depends_on = [aws_iam_role_policy.function]
}

# The HMAC key of upload-gateway tokens, created before apply (README).
data "aws_ssm_parameter" "upload_token_key" {
  name            = local.upload_token_key_param
  with_decryption = true
}

# The Ed25519 seed (base64 of 32 bytes) that signs the registry's bearer tokens, created before
# apply (README): one key for every function and the gateway, so a token issued by one is
# accepted by all.
data "aws_ssm_parameter" "token_signing_key" {
  name            = local.token_signing_key_param
  with_decryption = true
}
