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
# Mirrors `berth routes --output json` (the Endpoint declared beside each handler in
# shared/src/api; ENDPOINTS lists them): one Lambda function per route, named by the key, and the
# ports its handler uses, which decide its IAM permissions (functions.tf). tests/infra/test_infra.py
# fails when the two disagree.
################################################################################

locals {
  # A route's path: prefix + suffix, or prefix + "/" + <repository name> + suffix when
  # has_repository. /v2 is the OCI distribution API, /auth the token endpoint, /api/v1 the
  # management API, /console the web console's page and files.
  routes = {
    "token"             = { prefix = "/auth", methods = ["GET", "POST"], suffix = "/token", has_repository = false, ports = [] }
    "base"              = { prefix = "/v2", methods = ["GET", "HEAD"], suffix = "/", has_repository = false, ports = [] }
    "catalog"           = { prefix = "/v2", methods = ["GET"], suffix = "/_catalog", has_repository = false, ports = [] }
    "tags-list"         = { prefix = "/v2", methods = ["GET"], suffix = "/tags/list", has_repository = true, ports = [] }
    "manifest-get"      = { prefix = "/v2", methods = ["GET", "HEAD"], suffix = "/manifests/{reference}", has_repository = true, ports = ["blobs:read", "blobs:write", "metadata:write", "jobs:send"] }
    "manifest-put"      = { prefix = "/v2", methods = ["PUT"], suffix = "/manifests/{reference}", has_repository = true, ports = ["blobs:read", "blobs:write", "metadata:write", "jobs:send"] }
    "manifest-delete"   = { prefix = "/v2", methods = ["DELETE"], suffix = "/manifests/{reference}", has_repository = true, ports = ["blobs:read", "metadata:write", "jobs:send"] }
    "blob-get"          = { prefix = "/v2", methods = ["GET", "HEAD"], suffix = "/blobs/{digest}", has_repository = true, ports = ["blobs:read", "blobs:write", "metadata:write", "jobs:send"] }
    "blob-delete"       = { prefix = "/v2", methods = ["DELETE"], suffix = "/blobs/{digest}", has_repository = true, ports = ["metadata:write", "jobs:send"] }
    "upload-start"      = { prefix = "/v2", methods = ["POST"], suffix = "/blobs/uploads/", has_repository = true, ports = ["blobs:read", "blobs:write", "uploads:read", "uploads:write", "uploads:abort", "uploads:list", "metadata:write"] }
    "upload-patch"      = { prefix = "/v2", methods = ["PATCH"], suffix = "/blobs/uploads/{id}", has_repository = true, ports = ["uploads:read", "uploads:write", "uploads:abort", "metadata:write"] }
    "upload-put"        = { prefix = "/v2", methods = ["PUT"], suffix = "/blobs/uploads/{id}", has_repository = true, ports = ["blobs:read", "blobs:write", "uploads:read", "uploads:write", "uploads:abort", "uploads:list", "metadata:write"] }
    "upload-status"     = { prefix = "/v2", methods = ["GET"], suffix = "/blobs/uploads/{id}", has_repository = true, ports = [] }
    "upload-cancel"     = { prefix = "/v2", methods = ["DELETE"], suffix = "/blobs/uploads/{id}", has_repository = true, ports = ["uploads:abort", "uploads:list", "metadata:write"] }
    "referrers"         = { prefix = "/v2", methods = ["GET"], suffix = "/referrers/{digest}", has_repository = true, ports = [] }
    "api-registries"    = { prefix = "/api/v1", methods = ["GET", "POST"], suffix = "/registries", has_repository = false, ports = ["metadata:write"] }
    "api-registry"      = { prefix = "/api/v1", methods = ["GET", "PATCH", "DELETE"], suffix = "/registries/{registry}", has_repository = false, ports = ["blobs:read", "metadata:write", "jobs:send"] }
    "api-images"        = { prefix = "/api/v1", methods = ["GET"], suffix = "/registries/{registry}/images", has_repository = false, ports = ["blobs:read", "metadata:write"] }
    "api-image"         = { prefix = "/api/v1/images", methods = ["DELETE"], suffix = "", has_repository = true, ports = ["blobs:read", "metadata:write", "jobs:send"] }
    "api-artifacts"     = { prefix = "/api/v1/images", methods = ["GET"], suffix = "/artifacts", has_repository = true, ports = ["blobs:read"] }
    "api-artifact"      = { prefix = "/api/v1/images", methods = ["GET", "DELETE"], suffix = "/artifacts/{digest}", has_repository = true, ports = ["blobs:read", "metadata:write", "jobs:send"] }
    "api-artifact-scan" = { prefix = "/api/v1/images", methods = ["GET", "POST", "DELETE"], suffix = "/artifacts/{digest}/scan", has_repository = true, ports = ["blobs:read", "metadata:write", "jobs:send"] }
    "api-tags"          = { prefix = "/api/v1/images", methods = ["GET"], suffix = "/tags", has_repository = true, ports = [] }
    "api-tag"           = { prefix = "/api/v1/images", methods = ["PUT", "DELETE"], suffix = "/tags/{tag}", has_repository = true, ports = ["blobs:read", "metadata:write", "jobs:send"] }
    "api-users"         = { prefix = "/api/v1", methods = ["GET", "POST"], suffix = "/users", has_repository = false, ports = ["metadata:write"] }
    "api-user"          = { prefix = "/api/v1", methods = ["GET", "PATCH", "DELETE"], suffix = "/users/{user}", has_repository = false, ports = ["metadata:write"] }
    "api-keys"          = { prefix = "/api/v1", methods = ["GET", "POST"], suffix = "/users/{user}/keys", has_repository = false, ports = ["metadata:write"] }
    "api-key"           = { prefix = "/api/v1", methods = ["DELETE"], suffix = "/users/{user}/keys/{key}", has_repository = false, ports = ["metadata:write"] }
    "api-key-rotate"    = { prefix = "/api/v1", methods = ["POST"], suffix = "/users/{user}/keys/{key}/rotate", has_repository = false, ports = ["metadata:write"] }
    "api-audit"         = { prefix = "/api/v1", methods = ["GET"], suffix = "/audit", has_repository = false, ports = [] }
    "api-openapi"       = { prefix = "/api/v1", methods = ["GET"], suffix = "/openapi.json", has_repository = false, ports = [] }
    "console"           = { prefix = "/console", methods = ["GET", "HEAD"], suffix = "/{asset}", has_repository = false, ports = [] }
    # Image cleanup and protection policies of a registry, and garbage collection.
    "api-cleanup-rules"    = { prefix = "/api/v1", methods = ["GET", "POST"], suffix = "/registries/{registry}/cleanup/rules", has_repository = false, ports = ["metadata:write"] }
    "api-cleanup-rule"     = { prefix = "/api/v1", methods = ["PATCH", "DELETE"], suffix = "/registries/{registry}/cleanup/rules/{rule}", has_repository = false, ports = ["metadata:write"] }
    "api-cleanup-schedule" = { prefix = "/api/v1", methods = ["GET", "PUT", "DELETE"], suffix = "/registries/{registry}/cleanup/schedule", has_repository = false, ports = ["metadata:write"] }
    "api-cleanup-runs"     = { prefix = "/api/v1", methods = ["GET", "POST"], suffix = "/registries/{registry}/cleanup/runs", has_repository = false, ports = ["metadata:write", "jobs:send"] }
    "api-cleanup-run"      = { prefix = "/api/v1", methods = ["GET"], suffix = "/registries/{registry}/cleanup/runs/{run}", has_repository = false, ports = [] }
    "api-protection-rules" = { prefix = "/api/v1", methods = ["GET", "POST"], suffix = "/registries/{registry}/protection/rules", has_repository = false, ports = ["metadata:write"] }
    "api-protection-rule"  = { prefix = "/api/v1", methods = ["PATCH", "DELETE"], suffix = "/registries/{registry}/protection/rules/{rule}", has_repository = false, ports = ["metadata:write"] }
    "api-gc-runs"          = { prefix = "/api/v1", methods = ["GET", "POST"], suffix = "/gc/runs", has_repository = false, ports = ["metadata:write", "jobs:send"] }
    "api-gc-run"           = { prefix = "/api/v1", methods = ["GET"], suffix = "/gc/runs/{run}", has_repository = false, ports = [] }
    # Webhooks of a registry (or `_all`)
    "api-webhooks"           = { prefix = "/api/v1", methods = ["GET", "POST"], suffix = "/registries/{registry}/webhooks", has_repository = false, ports = ["metadata:write"] }
    "api-webhook"            = { prefix = "/api/v1", methods = ["GET", "PATCH", "DELETE"], suffix = "/registries/{registry}/webhooks/{webhook}", has_repository = false, ports = ["metadata:write"] }
    "api-webhook-test"       = { prefix = "/api/v1", methods = ["POST"], suffix = "/registries/{registry}/webhooks/{webhook}/test", has_repository = false, ports = ["metadata:write"] }
    "api-webhook-deliveries" = { prefix = "/api/v1", methods = ["GET"], suffix = "/registries/{registry}/webhooks/{webhook}/deliveries", has_repository = false, ports = [] }
    "api-webhook-redeliver"  = { prefix = "/api/v1", methods = ["POST"], suffix = "/registries/{registry}/webhooks/{webhook}/deliveries/{delivery}/redeliver", has_repository = false, ports = ["metadata:write", "jobs:send"] }
    # Replication: targets of a registry (or `_all`), its replication policies, their runs and history
    "api-replication-targets"    = { prefix = "/api/v1", methods = ["GET", "POST"], suffix = "/registries/{registry}/replication-targets", has_repository = false, ports = ["metadata:write"] }
    "api-replication-target"     = { prefix = "/api/v1", methods = ["GET", "PATCH", "DELETE"], suffix = "/registries/{registry}/replication-targets/{target}", has_repository = false, ports = ["metadata:write"] }
    "api-replications"           = { prefix = "/api/v1", methods = ["GET", "POST"], suffix = "/registries/{registry}/replications", has_repository = false, ports = ["metadata:write", "jobs:send"] }
    "api-replication"            = { prefix = "/api/v1", methods = ["GET", "PATCH", "DELETE"], suffix = "/registries/{registry}/replications/{replication}", has_repository = false, ports = ["metadata:write", "jobs:send"] }
    "api-replication-run"        = { prefix = "/api/v1", methods = ["POST"], suffix = "/registries/{registry}/replications/{replication}/run", has_repository = false, ports = ["metadata:write", "jobs:send"] }
    "api-replication-executions" = { prefix = "/api/v1", methods = ["GET"], suffix = "/registries/{registry}/replications/{replication}/executions", has_repository = false, ports = [] }
    "api-replication-execution"  = { prefix = "/api/v1", methods = ["GET"], suffix = "/registries/{registry}/replications/{replication}/executions/{execution}", has_repository = false, ports = [] }
    "api-replication-tasks"      = { prefix = "/api/v1", methods = ["GET"], suffix = "/registries/{registry}/replications/{replication}/executions/{execution}/tasks", has_repository = false, ports = [] }
    # Vulnerability scanning: a registry's scan settings (`_all`: the common allowlist)
    "api-scan-settings" = { prefix = "/api/v1", methods = ["GET", "PUT"], suffix = "/registries/{registry}/scan-settings", has_repository = false, ports = ["metadata:write"] }
    # Image trust: a registry's trust mode and the public keys its signatures are verified against
    "api-trust"      = { prefix = "/api/v1", methods = ["GET", "PUT"], suffix = "/registries/{registry}/trust", has_repository = false, ports = ["metadata:write"] }
    "api-trust-keys" = { prefix = "/api/v1", methods = ["GET", "POST"], suffix = "/registries/{registry}/trust/keys", has_repository = false, ports = ["metadata:write", "jobs:send"] }
    "api-trust-key"  = { prefix = "/api/v1", methods = ["GET", "DELETE"], suffix = "/registries/{registry}/trust/keys/{key}", has_repository = false, ports = ["metadata:write", "jobs:send"] }
    # Image caches: the source registries cache-type registries pull through (administrator objects)
    "api-caches" = { prefix = "/api/v1", methods = ["GET", "POST"], suffix = "/caches", has_repository = false, ports = ["metadata:write"] }
    "api-cache"  = { prefix = "/api/v1", methods = ["GET", "PATCH", "DELETE"], suffix = "/caches/{cache}", has_repository = false, ports = ["metadata:write"] }
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
  # An empty suffix ends the path at the repository name (DELETE /api/v1/images/{r1}/{r2}).
  # A route of static files (suffix "/{asset}", the web console) also serves its page at the bare
  # prefix: API Gateway matches "/console" and "/console/" to "GET /console", never to
  # "/console/{asset}".
  api_routes = merge(flatten([
    [for name, route in local.routes : {
      for pair in setproduct(route.methods, route.has_repository ? local.repository_paths : [""]) :
      "${pair[0]} ${trimsuffix(route.has_repository ? "${route.prefix}/${pair[1]}${route.suffix}" : "${route.prefix}${route.suffix}", "/")}" => name
    }],
    [for name, route in local.routes : { for method in route.methods : "${method} ${route.prefix}" => name } if route.suffix == "/{asset}"],
  ])...)
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
    # Its /tmp holds Trivy's vulnerability database while it is imported (about 1 GB today).
    "job-worker" = { memory_mb = 512, timeout_seconds = 300, ephemeral_storage_mb = 4096 }
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
      ephemeral_storage_mb = coalesce(
        try(var.function_overrides[name].ephemeral_storage_mb, null),
        try(local.job_functions[name].ephemeral_storage_mb, null),
        512,
      )
    }
  }

  artifacts_dir = coalesce(var.artifacts_dir, "${path.module}/../target/lambda")

  # What `cargo lambda build --profile lambda-zip --arm64 --output-format zip` writes for each function.
  function_artifacts = { for name in keys(local.functions) : name => "${local.artifacts_dir}/${name}/bootstrap.zip" }
}

################################################################################
# Shared configuration
################################################################################

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.region

  # SSM parameters are addressed by name; their ARN drops the name's leading "/".
  ssm_parameter_arn_prefix = "arn:${local.partition}:ssm:${local.region}:${local.account_id}:parameter/"

  upload_token_key_param     = coalesce(var.upload_token_key_param, "/${var.name}/upload-token-key")
  upload_token_key_param_arn = "${local.ssm_parameter_arn_prefix}${trimprefix(local.upload_token_key_param, "/")}"

  token_signing_key_param     = coalesce(var.token_signing_key_parameter, "/${var.name}/token-signing-key")
  token_signing_key_param_arn = "${local.ssm_parameter_arn_prefix}${trimprefix(local.token_signing_key_param, "/")}"

  secrets_key_param     = coalesce(var.secrets_key_ssm_parameter, "/${var.name}/secrets-key")
  secrets_key_param_arn = "${local.ssm_parameter_arn_prefix}${trimprefix(local.secrets_key_param, "/")}"

  # The bootstrap administrator key, made sure of by the upload gateway (`berth serve`) at start:
  # both parameters or neither (checked on the task definition).
  admin_key_params = {
    for env, name in {
      BERTH_ADMIN_ACCESS_KEY = var.admin_access_key_parameter
      BERTH_ADMIN_SECRET_KEY = var.admin_secret_key_parameter
    } : env => "${local.ssm_parameter_arn_prefix}${trimprefix(name, "/")}" if name != null
  }

  public_api            = !var.private_access
  upload_gateway        = var.enable_upload_gateway
  upload_gateway_host   = try(coalesce(var.upload_gateway_domain_name, aws_lb.upload_gateway[0].dns_name), "")
  upload_gateway_url    = local.upload_gateway ? "https://${local.upload_gateway_host}" : ""
  registry_default_host = local.public_api ? try(trimprefix(aws_apigatewayv2_api.registry[0].api_endpoint, "https://"), "") : ""
  registry_url          = var.domain_name != null ? "https://${var.domain_name}" : "https://${local.registry_default_host}"

  # The environment of every function and of the upload gateway (shared/src/config.rs). The
  # secrets (BERTH_UPLOAD_TOKEN_KEY, BERTH_TOKEN_SIGNING_KEY, BERTH_SECRETS_KEY) are added where
  # each is resolved: functions.tf and upload_gateway.tf. What only some functions need:
  # local.function_environment.
  berth_environment = {
    BERTH_BUCKET                 = aws_s3_bucket.blobs.bucket
    BERTH_TABLE                  = aws_dynamodb_table.metadata.name
    BERTH_QUEUE_URL              = aws_sqs_queue.jobs.url
    BERTH_PRESIGN_EXPIRY_SECONDS = tostring(var.presign_expiry_seconds)
    BERTH_UPLOAD_GATEWAY_URL     = local.upload_gateway_url
    # The realm of 401 challenges is <BERTH_PUBLIC_URL>/auth/token: the registry host, also in
    # the gateway's answers (which would otherwise name the gateway's own host).
    BERTH_PUBLIC_URL                     = local.registry_url
    BERTH_TOKEN_LIFETIME_SECONDS         = tostring(var.token_lifetime_seconds)
    AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH = "true"
    RUST_LOG                             = var.rust_log
    # where the scanner's vulnerability data is (an artifact in this registry): job-worker
    # matches against it, api-artifact-scan describes findings from it
    BERTH_SCAN_DB = var.scan_db
  }

  # Outbound requests to addresses the operator chose (webhook and replication targets, image
  # cache sources): the functions that check a target URL when a webhook policy, a replication
  # target, a replication policy or an image cache is written get the allow-list, as do the ones
  # that reach a cache's source on a pull; the ones that deliver get the delivery settings too.
  # The others have no use for them.
  outbound_environment = {
    BERTH_OUTBOUND_ALLOW = join(",", var.outbound_allow_cidrs)
  }
  webhook_delivery_environment = merge(local.outbound_environment, {
    BERTH_WEBHOOK_TIMEOUT_SECS = tostring(var.webhook_timeout_seconds)
    BERTH_WEBHOOK_MAX_ATTEMPTS = tostring(var.webhook_max_attempts)
    BERTH_WEBHOOK_RETRY_SECS   = tostring(var.webhook_retry_seconds)
  })

  # job-worker copies images to replication targets in steps: a step stops and re-queues the rest
  # of its task after BERTH_REPLICATION_STEP_SECS, 60 s before the invocation would time out
  # (job-worker's timeout is at least 120 s: function_overrides' validation).
  replication_step_seconds = local.functions["job-worker"].timeout_seconds - 60
  replication_environment = {
    BERTH_REPLICATION_STEP_SECS = tostring(local.replication_step_seconds)
  }

  # Image caches (shared/src/cache_settings.rs). api-caches and api-cache check a cache's source
  # URL when a cache is written: its port against BERTH_CACHE_SOURCE_PORTS, its address against
  # the outbound allow-list; every request to a source (token realms and blob redirects too)
  # passes both again, so every function that talks to sources gets both. A pull through a cache-type registry asks the source (through the
  # same allow-list): manifest-get asks about a tag at most once per BERTH_CACHE_CHECK_SECS and
  # fetches the manifest, blob-get checks that the source has the blob, and both queue the rest
  # for job-worker (S3 serves blobs by redirect, so their bytes are fetched there, not in the
  # request). Each caching gives up after BERTH_CACHE_BUDGET_SECS, so that job-worker ends it
  # cleanly before its invocation times out: cache_budget_seconds, at most job-worker's timeout
  # minus 60 s (the precondition on aws_lambda_function.this), by default Berth's 200 s or that
  # bound if it is lower. blob-get reads the budget too.
  cache_source_environment = merge(local.outbound_environment, {
    BERTH_CACHE_SOURCE_PORTS = join(",", var.cache_source_ports)
  })
  cache_ports_environment = {
    BERTH_CACHE_SOURCE_PORTS = join(",", var.cache_source_ports)
  }
  cache_budget_seconds = coalesce(var.cache_budget_seconds, min(200, local.functions["job-worker"].timeout_seconds - 60))
  cache_budget_environment = {
    BERTH_CACHE_BUDGET_SECS = tostring(local.cache_budget_seconds)
  }

  # Mirror hosts: a request whose Host is one of them is served as if its path named the host's
  # cache registry (/v2/library/alpine/... = /v2/<registry>/library/alpine/...). berth::api::handle
  # rewrites the path of every /v2 repository route, so each of their functions gets the map.
  mirror_environment = {
    BERTH_MIRROR_HOSTS = join(",", [for host, registry in var.cache_mirror_hosts : "${host}=${registry}"])
  }
  mirror_functions = [for name, route in local.routes : name if route.prefix == "/v2" && route.has_repository]

  # function => its environment beyond local.berth_environment. job-worker fans registry events
  # out to the webhook policies, delivers them, puts them on the event bus (the only function
  # allowed events:PutEvents), runs replications and fills image caches (outbound to the targets
  # and sources, so the allow-list of the webhook settings covers them too); api-webhook-test
  # delivers a ping synchronously. The /v2 repository routes get the mirror hosts; manifest-get
  # and blob-get, listed below, get them with their cache settings.
  function_environment = merge({ for name in local.mirror_functions : name => local.mirror_environment }, {
    "job-worker"              = merge(local.webhook_delivery_environment, local.replication_environment, local.cache_budget_environment, local.cache_ports_environment, { BERTH_EVENT_BUS = aws_cloudwatch_event_bus.registry.name })
    "api-webhook-test"        = local.webhook_delivery_environment
    "api-webhooks"            = local.outbound_environment
    "api-webhook"             = local.outbound_environment
    "api-replication-targets" = local.outbound_environment
    "api-replication-target"  = local.outbound_environment
    "api-replications"        = local.outbound_environment
    "api-replication"         = local.outbound_environment
    "api-caches"              = local.cache_source_environment
    "api-cache"               = local.cache_source_environment
    "manifest-get"            = merge(local.cache_source_environment, local.mirror_environment, { BERTH_CACHE_CHECK_SECS = tostring(var.cache_check_seconds) })
    "blob-get"                = merge(local.cache_source_environment, local.mirror_environment, local.cache_budget_environment)
  })
}
