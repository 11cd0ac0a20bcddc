################################################################################
# Permissions
#
# A route function gets the permission sets of the ports its Endpoint declares (local.routes,
# mirrored from `berth routes --output json`) plus the edge's; the Lambda function tests fail a
# route that uses a port it does not declare. The job functions' sets are listed here.
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
    meta_write = { actions = ["dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem", "dynamodb:ConditionCheckItem"], resources = local.table_resources }
    # The edge's own writes (shared/src/api/endpoint.rs, EDGE_WRITES): the document partitions of
    # access key use stamps and audit entries, nothing else. No credential record: a key counts
    # only while its user lists it, and user and key records need meta_write. (The signing key
    # the edge would make on first use always comes from SSM here.)
    edge_write = {
      actions    = ["dynamodb:PutItem", "dynamodb:UpdateItem"]
      resources  = [aws_dynamodb_table.metadata.arn]
      conditions = [{ test = "ForAllValues:StringEquals", variable = "dynamodb:LeadingKeys", values = ["doc#key-use", "doc#audit"] }]
    }
    jobs_send    = { actions = ["sqs:SendMessage"], resources = [aws_sqs_queue.jobs.arn] }
    jobs_consume = { actions = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"], resources = [aws_sqs_queue.jobs.arn] }
    kms          = { actions = ["kms:Decrypt", "kms:GenerateDataKey"], resources = compact([var.kms_key_arn]) }
    # Registry events onto the bus infra teams route from (events.tf): job-worker only.
    events_put = { actions = ["events:PutEvents"], resources = [aws_cloudwatch_event_bus.registry.arn] }
  }

  # What each port a route declares ("ports" in `berth routes --output json`, mirrored in
  # local.routes) is granted as. ListBucket goes with every S3 read: without it S3 answers 403
  # instead of 404 for a missing key.
  port_permissions = {
    "blobs:read"     = ["blob_read", "bucket_list"]
    "blobs:write"    = ["blob_write"]
    "blobs:delete"   = ["blob_delete"]
    "blobs:list"     = ["bucket_list"]
    "uploads:read"   = ["staging_read", "bucket_list"]
    "uploads:write"  = ["staging_write"]
    "uploads:abort"  = ["staging_cleanup", "bucket_list"]
    "uploads:list"   = ["staging_list"]
    "metadata:write" = ["meta_write"]
    "jobs:send"      = ["jobs_send"]
  }

  # Every route authenticates its request (shared/src/access): it reads users, keys and registries
  # (meta_read) and writes only key last-use stamps, audit entries and the signing key made on
  # first use (edge_write, limited to those partitions). A route declaring no metadata:write
  # therefore gets read-only access to the registry's own data.
  edge_permissions = ["meta_read", "edge_write"]

  route_permissions = {
    for name, route in local.routes :
    name => distinct(concat(local.edge_permissions, flatten([for port in route.ports : local.port_permissions[port]])))
  }

  # The job functions have no route: they run every kind of job (expire-uploads, cleanup runs,
  # garbage collection, which lists blobs/ and deletes unreferenced blob bytes, registry events:
  # fanned out to the webhook policies, delivered, and put on the event bus, replication copies,
  # which read the manifests and blobs they send to the targets, image cachings, which stage a
  # source's blob in uploads/, read it back into blobs/ once its digest checks and store the
  # manifests they fetch) and fire the stored cron schedules (reads them and claims each due
  # time with a conditional write before enqueueing its job).
  job_permissions = {
    "job-worker"    = ["jobs_consume", "jobs_send", "meta_read", "meta_write", "bucket_list", "staging_read", "staging_write", "staging_cleanup", "staging_list", "blob_read", "blob_write", "blob_delete", "events_put"]
    "job-scheduler" = ["jobs_send", "meta_read", "meta_write"]
  }

  # function => permission sets. Keys are exactly local.functions (checked by tests/infra).
  function_permissions = merge(local.route_permissions, local.job_permissions)

  # The customer managed key, when there is one, is needed by everything that touches data.
  function_permission_sets = {
    for name, sets in local.function_permissions :
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

      dynamic "condition" {
        for_each = try(local.permission_sets[statement.value].conditions, [])

        content {
          test     = condition.value.test
          variable = condition.value.variable
          values   = condition.value.values
        }
      }
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
  #checkov:skip=CKV_AWS_117:The functions call AWS APIs (S3, DynamoDB, SQS, EventBridge) and public webhook and replication targets and image cache sources; a VPC attachment would need a NAT gateway for the deliveries, copies and pulls and add cold-start latency without isolating anything.
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

  ephemeral_storage {
    size = each.value.ephemeral_storage_mb
  }

  environment {
    # The keys reach the functions as environment variables (encrypted at rest by Lambda) rather
    # than by an SSM call on every cold start; the gateway reads them as ECS secrets.
    variables = merge(local.berth_environment, try(local.function_environment[each.key], {}), {
      BERTH_UPLOAD_TOKEN_KEY  = data.aws_ssm_parameter.upload_token_key.value
      BERTH_TOKEN_SIGNING_KEY = data.aws_ssm_parameter.token_signing_key.value
      BERTH_SECRETS_KEY       = data.aws_ssm_parameter.secrets_key.value
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

  lifecycle {
    precondition {
      condition     = each.key != "job-worker" || local.cache_budget_seconds <= each.value.timeout_seconds - 60
      error_message = "cache_budget_seconds must end an image caching a minute before job-worker times out: at most function_overrides[\"job-worker\"].timeout_seconds (default 300) minus 60."
    }
  }
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

# The key (base64 of 32 bytes) that encrypts webhook secrets and auth headers at rest, created
# before apply (README): one key for every function and the gateway, so what one stored the
# others can read.
data "aws_ssm_parameter" "secrets_key" {
  name            = local.secrets_key_param
  with_decryption = true
}
