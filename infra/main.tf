provider "aws" {
  region = var.region

  default_tags {
    tags = merge({ "app" = "berth", "berth:deployment" = var.name }, var.tags)
  }
}

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

################################################################################
# Route table
#
# Mirrors `berth routes` (shared/src/api/routes.rs, ROUTE_SPECS): one Lambda function per
# route, named by the key. tests/infra/test_infra.py fails when the two disagree.
################################################################################

locals {
  routes = {
    "base"            = { methods = ["GET", "HEAD"], suffix = "/", has_repository = false }
    "catalog"         = { methods = ["GET"], suffix = "/_catalog", has_repository = false }
    "tags-list"       = { methods = ["GET"], suffix = "/tags/list", has_repository = true }
    "manifest-get"    = { methods = ["GET", "HEAD"], suffix = "/manifests/{reference}", has_repository = true }
    "manifest-put"    = { methods = ["PUT"], suffix = "/manifests/{reference}", has_repository = true }
    "manifest-delete" = { methods = ["DELETE"], suffix = "/manifests/{reference}", has_repository = true }
    "blob-get"        = { methods = ["GET", "HEAD"], suffix = "/blobs/{digest}", has_repository = true }
    "blob-delete"     = { methods = ["DELETE"], suffix = "/blobs/{digest}", has_repository = true }
    "upload-start"    = { methods = ["POST"], suffix = "/blobs/uploads/", has_repository = true }
    "upload-patch"    = { methods = ["PATCH"], suffix = "/blobs/uploads/{id}", has_repository = true }
    "upload-put"      = { methods = ["PUT"], suffix = "/blobs/uploads/{id}", has_repository = true }
    "upload-status"   = { methods = ["GET"], suffix = "/blobs/uploads/{id}", has_repository = true }
    "upload-cancel"   = { methods = ["DELETE"], suffix = "/blobs/uploads/{id}", has_repository = true }
    "referrers"       = { methods = ["GET"], suffix = "/referrers/{digest}", has_repository = true }
  }

  # "{r1}", "{r1}/{r2}", ...: a repository name of each supported depth. API Gateway allows a
  # greedy {proxy+} only as the last segment, so a multi-segment name before /blobs/ needs one
  # route per depth.
  repository_paths = [
    for depth in range(1, var.max_repository_depth + 1) : join("/", formatlist("{r%d}", range(1, depth + 1)))
  ]

  # "METHOD /path" => function, for every method of every route at every depth. Route paths
  # cannot end in "/": API Gateway rejects them, and matches "/v2/" against "/v2" and
  # ".../blobs/uploads/" against ".../blobs/uploads" anyway (the Rust router accepts both forms).
  api_routes = merge([
    for name, route in local.routes : {
      for pair in setproduct(route.methods, route.has_repository ? local.repository_paths : [""]) :
      "${pair[0]} ${trimsuffix(route.has_repository ? "/v2/${pair[1]}${route.suffix}" : "/v2${route.suffix}", "/")}" => name
    }
  ]...)
}

################################################################################
# Functions: the routes plus the two job functions
################################################################################

locals {
  # Defaults per function; var.function_overrides wins over these, these over the globals.
  function_defaults = {
    "manifest-put" = { memory_mb = 512 }
    "upload-start" = { memory_mb = 512 }
    "upload-patch" = { memory_mb = 1024 }
    "upload-put"   = { memory_mb = 1024 }
  }

  job_functions = {
    # SQS consumer (ReportBatchItemFailures). Its timeout sets the queue's visibility timeout.
    "job-worker" = { memory_mb = 512, timeout_seconds = 300 }
    # EventBridge schedule: enqueues the periodic jobs.
    "job-scheduler" = { memory_mb = 128, timeout_seconds = 60 }
  }

  functions = {
    for name in concat(keys(local.routes), keys(local.job_functions)) : name => {
      memory_mb = coalesce(
        try(var.function_overrides[name].memory_mb, null),
        try(local.job_functions[name].memory_mb, null),
        try(local.function_defaults[name].memory_mb, null),
        var.lambda_memory_mb,
      )
      timeout_seconds = coalesce(
        try(var.function_overrides[name].timeout_seconds, null),
        try(local.job_functions[name].timeout_seconds, null),
        var.lambda_timeout_seconds,
      )
      reserved_concurrency = try(var.function_overrides[name].reserved_concurrency, null)
    }
  }

  artifacts_dir = coalesce(var.artifacts_dir, "${path.module}/../target/lambda")

  # What `cargo lambda build --release --arm64 --output-format zip` writes for each function.
  function_artifacts = { for name in keys(local.functions) : name => "${local.artifacts_dir}/${name}/bootstrap.zip" }
}

################################################################################
# Shared configuration
################################################################################

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.region

  upload_token_key_param     = coalesce(var.upload_token_key_param, "/${var.name}/upload-token-key")
  upload_token_key_param_arn = "arn:${local.partition}:ssm:${local.region}:${local.account_id}:parameter/${trimprefix(local.upload_token_key_param, "/")}"

  public_api            = !var.private_access
  upload_gateway        = var.enable_upload_gateway
  upload_gateway_host   = try(coalesce(var.upload_gateway_domain_name, aws_lb.upload_gateway[0].dns_name), "")
  upload_gateway_url    = local.upload_gateway ? "https://${local.upload_gateway_host}" : ""
  registry_default_host = local.public_api ? try(trimprefix(aws_apigatewayv2_api.registry[0].api_endpoint, "https://"), "") : ""
  registry_url          = var.domain_name != null ? "https://${var.domain_name}" : "https://${local.registry_default_host}"

  # The environment of every function and of the upload gateway (shared/src config).
  berth_environment = {
    BERTH_BUCKET                         = aws_s3_bucket.blobs.bucket
    BERTH_TABLE                          = aws_dynamodb_table.metadata.name
    BERTH_QUEUE_URL                      = aws_sqs_queue.jobs.url
    BERTH_PRESIGN_EXPIRY_SECONDS         = tostring(var.presign_expiry_seconds)
    BERTH_UPLOAD_GATEWAY_URL             = local.upload_gateway_url
    AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH = "true"
    RUST_LOG                             = var.rust_log
  }
}
