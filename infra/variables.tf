################################################################################
# General
################################################################################

variable "name" {
  description = "Prefix of every resource name (functions are named <name>-<route>, e.g. berth-blob-get)."
  type        = string
  default     = "berth"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.name))
    error_message = "name must be 2-21 lowercase letters, digits or dashes, starting with a letter (it prefixes S3, Lambda and IAM names)."
  }
}

variable "region" {
  description = "AWS region to deploy into."
  type        = string
  default     = "us-east-1"
}

variable "tags" {
  description = "Tags added to every resource (through the provider's default_tags)."
  type        = map(string)
  default     = {}
}

variable "kms_key_arn" {
  description = "Customer managed KMS key for S3, DynamoDB, SQS, CloudWatch Logs, the registry event bus and Lambda environment variables. null = AWS managed encryption (SSE-S3, aws/dynamodb, SSE-SQS, service default keys, an AWS owned key for the bus). The key policy must let CloudWatch Logs (logs.<region>.amazonaws.com) and EventBridge (events.amazonaws.com, for the event bus) use it."
  type        = string
  default     = null
}

variable "log_retention_days" {
  description = "Retention of every CloudWatch log group (functions, API access logs, upload gateway)."
  type        = number
  default     = 30
}

variable "scan_db" {
  description = "The artifact in this registry that holds the scanner's vulnerability data (BERTH_SCAN_DB, registry/image:tag): OSV records in layers of media type application/vnd.berth.vulndb.osv.v1+json, pushed with oras or mirrored by a replication or an image cache. The registry must exist."
  type        = string
  default     = "security/vulndb:latest"
  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9._-]*(/[a-z0-9][a-z0-9._-]*)+:[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$", var.scan_db))
    error_message = "scan_db must be registry/image:tag, e.g. security/vulndb:latest."
  }
}

variable "rust_log" {
  description = "RUST_LOG filter of the functions and the upload gateway."
  type        = string
  default     = "info"
}

################################################################################
# Routes and API
################################################################################

variable "max_repository_depth" {
  description = "Deepest repository name served, in path segments (org/team/app = 3). API Gateway cannot put a greedy variable before a suffix, so every repository route (/v2/<name>/... and /api/v1/images/<name>/...) is expanded once per depth 1..N; deeper names get 404. Route count = 68 + 24 x N (see README)."
  type        = number
  default     = 4

  validation {
    condition     = var.max_repository_depth >= 1 && var.max_repository_depth <= 8 && floor(var.max_repository_depth) == var.max_repository_depth
    error_message = "max_repository_depth must be a whole number from 1 to 8 (8 gives 234 routes, under the 300-routes quota)."
  }
}

variable "domain_name" {
  description = "Custom domain of the registry (e.g. registry.example.com). Optional for the public HTTP API; required with private_access (docker needs /v2/ at the host root, and a private API's default URL carries the stage in the path)."
  type        = string
  default     = null
}

variable "certificate_arn" {
  description = "ACM certificate (same region) covering domain_name."
  type        = string
  default     = null
}

variable "route53_zone_id" {
  description = "Route 53 hosted zone in which to create the alias record of domain_name. null = manage DNS yourself (output registry_dns_target). With private_access use a private hosted zone associated with the VPC."
  type        = string
  default     = null
}

variable "api_throttling_burst_limit" {
  description = "API Gateway burst limit (requests) for the whole registry API."
  type        = number
  default     = 500
}

variable "api_throttling_rate_limit" {
  description = "API Gateway steady-state rate limit (requests per second) for the whole registry API."
  type        = number
  default     = 1000
}

variable "presign_expiry_seconds" {
  description = "Lifetime of the presigned S3 URLs that blob GETs redirect to (BERTH_PRESIGN_EXPIRY_SECONDS). CNCF distribution uses 20 minutes."
  type        = number
  default     = 1200
}

################################################################################
# Lambda functions
################################################################################

variable "artifacts_dir" {
  description = "Directory holding <function>/bootstrap.zip as built by `cargo lambda build --profile lambda-zip --arm64 --output-format zip`. null = <repo>/target/lambda."
  type        = string
  default     = null
}

variable "lambda_memory_mb" {
  description = "Memory of every function without its own default or override."
  type        = number
  default     = 256
}

variable "lambda_timeout_seconds" {
  description = "Timeout of every route function without an override. API Gateway gives up after 30 s, so more than 29 only burns money."
  type        = number
  default     = 29
}

variable "function_overrides" {
  description = "Per-function settings keyed by function name (route name, job-worker or job-scheduler). reserved_concurrency = null leaves the function on the unreserved pool; ephemeral_storage_mb sizes /tmp (job-worker: 4096 by default, for importing Trivy's database). job-worker's timeout (default 300) is 120 to 900 s: a replication copy step stops and re-queues itself 60 s before it (BERTH_REPLICATION_STEP_SECS = timeout - 60)."
  type = map(object({
    memory_mb            = optional(number)
    timeout_seconds      = optional(number)
    reserved_concurrency = optional(number)
    ephemeral_storage_mb = optional(number)
  }))
  default = {}

  validation {
    condition     = alltrue([for name, o in var.function_overrides : o.ephemeral_storage_mb >= 512 && o.ephemeral_storage_mb <= 10240 if o.ephemeral_storage_mb != null])
    error_message = "function_overrides[*].ephemeral_storage_mb must be from 512 to 10240 (Lambda's /tmp limits); job-worker's (default 4096) holds Trivy's database while it is imported."
  }

  validation {
    condition     = alltrue([for name, o in var.function_overrides : o.timeout_seconds >= 120 && o.timeout_seconds <= 900 && floor(o.timeout_seconds) == o.timeout_seconds if name == "job-worker" && o.timeout_seconds != null])
    error_message = "function_overrides[\"job-worker\"].timeout_seconds must be a whole number from 120 to 900 (a replication step gets the timeout minus 60 s)."
  }
}

variable "enable_xray_tracing" {
  description = "Active X-Ray tracing on the functions and the private REST API stage."
  type        = bool
  default     = true
}

################################################################################
# Storage
################################################################################

variable "bucket_name" {
  description = "Name of the blob bucket. null = <name>-blobs-<account id>-<region>."
  type        = string
  default     = null
}

variable "bucket_versioning" {
  description = "Enable S3 versioning on the blob bucket. Blobs are content-addressed and never overwritten, so versioning only keeps deleted blobs (for noncurrent_version_expiration_days)."
  type        = bool
  default     = false
}

variable "noncurrent_version_expiration_days" {
  description = "Days after which noncurrent object versions are deleted (only matters with bucket_versioning)."
  type        = number
  default     = 30
}

variable "abort_incomplete_multipart_days" {
  description = "Days after initiation after which S3 aborts an unfinished multipart upload (counted from initiation, not from the last part)."
  type        = number
  default     = 1
}

variable "upload_objects_expiration_days" {
  description = "Days after which objects under uploads/ (staged upload tails and parts) expire. Keep it above the upload session expiry (1 day by default)."
  type        = number
  default     = 2
}

variable "bucket_force_destroy" {
  description = "Let `terraform destroy` delete a non-empty blob bucket."
  type        = bool
  default     = false
}

variable "table_deletion_protection" {
  description = "DynamoDB deletion protection on the metadata table."
  type        = bool
  default     = true
}

################################################################################
# Jobs
################################################################################

variable "queue_max_receive_count" {
  description = "Deliveries of a job before SQS moves it to the dead-letter queue."
  type        = number
  default     = 5
}

variable "job_worker_batch_size" {
  description = "Jobs per job-worker invocation."
  type        = number
  default     = 10
}

variable "job_worker_max_concurrency" {
  description = "Most concurrent job-worker invocations the SQS event source mapping starts (2-1000)."
  type        = number
  default     = 5
}

variable "scheduler_rate" {
  description = "EventBridge schedule expression that triggers job-scheduler (cron schedules fire at most this late; keep it at one minute)."
  type        = string
  default     = "rate(1 minute)"
}

################################################################################
# Registry events, webhooks and replication
################################################################################

variable "event_bus_name" {
  description = "Name of the EventBridge bus job-worker puts every registry event on (BERTH_EVENT_BUS; source berth.registry). null = <name>-events."
  type        = string
  default     = null

  validation {
    condition     = var.event_bus_name == null ? true : can(regex("^[A-Za-z0-9._-]{1,256}$", var.event_bus_name)) && var.event_bus_name != "default"
    error_message = "event_bus_name must be 1-256 letters, digits, dots, dashes or underscores, and not \"default\" (the account's own bus)."
  }
}

variable "webhook_timeout_seconds" {
  description = "Per-attempt timeout of a webhook delivery, connect and whole response (BERTH_WEBHOOK_TIMEOUT_SECS). api-webhook-test sends its ping within the API's 30 s, and job-worker delivers a batch within its own timeout, so at most 25."
  type        = number
  default     = 10

  validation {
    condition     = var.webhook_timeout_seconds >= 1 && var.webhook_timeout_seconds <= 25 && floor(var.webhook_timeout_seconds) == var.webhook_timeout_seconds
    error_message = "webhook_timeout_seconds must be a whole number from 1 to 25."
  }
}

variable "webhook_max_attempts" {
  description = "Attempts of a webhook delivery before it becomes dead (BERTH_WEBHOOK_MAX_ATTEMPTS)."
  type        = number
  default     = 8

  validation {
    condition     = var.webhook_max_attempts >= 1 && var.webhook_max_attempts <= 50 && floor(var.webhook_max_attempts) == var.webhook_max_attempts
    error_message = "webhook_max_attempts must be a whole number from 1 to 50."
  }
}

variable "webhook_retry_seconds" {
  description = "Delay before the first retry of a failed webhook delivery (BERTH_WEBHOOK_RETRY_SECS); it doubles per attempt, capped at 900 s."
  type        = number
  default     = 2

  validation {
    condition     = var.webhook_retry_seconds >= 1 && var.webhook_retry_seconds <= 900 && floor(var.webhook_retry_seconds) == var.webhook_retry_seconds
    error_message = "webhook_retry_seconds must be a whole number from 1 to 900."
  }
}

variable "outbound_allow_cidrs" {
  description = "CIDRs that outbound requests (webhook deliveries, replication targets, image cache sources) may reach although they are not public addresses: loopback, link-local, private, unique-local, CGNAT and the like are refused otherwise (BERTH_OUTBOUND_ALLOW, comma-joined). Given to job-worker, api-webhook-test, api-webhooks, api-webhook, api-replication-targets, api-replication-target, api-replications, api-replication, api-caches, api-cache, manifest-get and blob-get. Empty = public addresses only."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for cidr in var.outbound_allow_cidrs : can(cidrhost(cidr, 0))])
    error_message = "outbound_allow_cidrs must be CIDR blocks (10.0.0.0/8, fd00::/8)."
  }
}

variable "secrets_key_ssm_parameter" {
  description = "Name of the SSM SecureString parameter holding the key that encrypts webhook secrets and auth headers at rest (BERTH_SECRETS_KEY: base64 of 32 random bytes, e.g. `openssl rand -base64 32`). Create it before apply (README); replacing its value makes the stored webhook secrets unreadable. null = /<name>/secrets-key."
  type        = string
  default     = null
}

################################################################################
# Image caches (pull-through registries)
################################################################################

variable "cache_source_ports" {
  description = "Ports an image cache's source URL may use (BERTH_CACHE_SOURCE_PORTS, comma-joined), checked by api-caches and api-cache when a cache is written and by manifest-get, blob-get and job-worker on every request to a source (token realms and blob redirects included); [\"*\"] = any port. The source's address must pass outbound_allow_cidrs too."
  type        = list(string)
  default     = ["80", "443"]

  validation {
    condition     = join(",", var.cache_source_ports) == "*" || (length(var.cache_source_ports) > 0 && alltrue([for p in var.cache_source_ports : can(regex("^[0-9]{1,5}$", p)) && try(tonumber(p) >= 1 && tonumber(p) <= 65535, false)]))
    error_message = "cache_source_ports must be ports from 1 to 65535 (e.g. [80, 443, 5000]), or [\"*\"] alone for any port."
  }
}

variable "cache_check_seconds" {
  description = "How long manifest-get serves a cached tag without asking its source again, per function instance (BERTH_CACHE_CHECK_SECS). 0 = ask on every pull by tag."
  type        = number
  default     = 30

  validation {
    condition     = var.cache_check_seconds >= 0 && var.cache_check_seconds <= 86400 && floor(var.cache_check_seconds) == var.cache_check_seconds
    error_message = "cache_check_seconds must be a whole number of seconds from 0 to 86400."
  }
}

variable "cache_budget_seconds" {
  description = "How long one image caching (an image or a blob, fetched by job-worker) may take before it is given up and left to the next pull (BERTH_CACHE_BUDGET_SECS). At most job-worker's timeout minus 60 s (checked at plan). null = 200, or job-worker's timeout minus 60 if that is lower."
  type        = number
  default     = null

  validation {
    condition     = var.cache_budget_seconds == null ? true : var.cache_budget_seconds >= 1 && var.cache_budget_seconds <= 840 && floor(var.cache_budget_seconds) == var.cache_budget_seconds
    error_message = "cache_budget_seconds must be a whole number of seconds from 1 to 840 (job-worker's longest timeout, 900, minus 60)."
  }
}

variable "cache_mirror_hosts" {
  description = "Mirror hosts (BERTH_MIRROR_HOSTS): host name => cache-type registry. A pull whose Host is such a name (port ignored) is served from that registry without its prefix (/v2/library/alpine/... on the host = /v2/<registry>/library/alpine/...), as Docker's registry-mirrors and containerd's hosts.toml ask. Given to every /v2 repository function. Each host must reach the registry API: a custom domain mapped to it (README). Empty = none."
  type        = map(string)
  default     = {}

  validation {
    condition = alltrue([for host, registry in var.cache_mirror_hosts :
      can(regex("^[A-Za-z0-9.-]+$", host)) && can(regex("^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$", registry)) && !can(regex("\\.\\.|___|\\.-|-\\.|\\._|_\\.", registry))
    ])
    error_message = "cache_mirror_hosts maps host names (letters, digits, dots, dashes) to registry names (1-63 lowercase letters, digits and single '.', '_' or '-' separators, starting and ending with a letter or digit)."
  }
}

################################################################################
# Upload gateway (ECS Fargate behind an ALB)
################################################################################

variable "enable_upload_gateway" {
  description = "Create the upload gateway. Without it `docker push` works only for layers under ~4.5 MiB (see shared/research/upload-path.md)."
  type        = bool
  default     = true
}

variable "upload_gateway_image" {
  description = "Container image of the upload gateway (linux/arm64) with `berth` on PATH, e.g. <account>.dkr.ecr.<region>.amazonaws.com/berth:<git sha>. Required with enable_upload_gateway."
  type        = string
  default     = null
}

variable "upload_gateway_command" {
  description = "Entry point of the gateway container."
  type        = list(string)
  default     = ["berth", "serve", "--backend", "aws", "--listen", "0.0.0.0:8080"]
}

variable "upload_gateway_cpu" {
  description = "Fargate task CPU units."
  type        = number
  default     = 1024
}

variable "upload_gateway_memory" {
  description = "Fargate task memory (MiB)."
  type        = number
  default     = 2048
}

variable "upload_gateway_desired_count" {
  description = "Running gateway tasks. Keep at least 1: the ALB cannot start a task on demand and docker retries for only ~50 s."
  type        = number
  default     = 1
}

variable "upload_gateway_domain_name" {
  description = "Host name of the upload gateway (e.g. upload.example.net). It must not be the registry host nor a subdomain of it. null = the ALB's DNS name (then upload_gateway_certificate_arn cannot match and TLS fails: set it for real use)."
  type        = string
  default     = null
}

variable "upload_gateway_certificate_arn" {
  description = "ACM certificate covering upload_gateway_domain_name, for the ALB HTTPS listener. Required with enable_upload_gateway."
  type        = string
  default     = null
}

variable "upload_gateway_route53_zone_id" {
  description = "Route 53 hosted zone in which to create the alias record of upload_gateway_domain_name (usually another apex than the registry's). null = manage DNS yourself (output upload_gateway_dns_target)."
  type        = string
  default     = null
}

variable "upload_gateway_idle_timeout_seconds" {
  description = "ALB idle timeout. CompleteMultipartUpload of a big layer can keep a request silent for minutes, so at least 900."
  type        = number
  default     = 1200

  validation {
    condition     = var.upload_gateway_idle_timeout_seconds >= 900 && var.upload_gateway_idle_timeout_seconds <= 4000
    error_message = "upload_gateway_idle_timeout_seconds must be between 900 and 4000."
  }
}

variable "upload_gateway_ingress_cidrs" {
  description = "CIDRs allowed to reach the gateway's HTTPS listener. Empty = the VPC CIDR when private_access, else 0.0.0.0/0."
  type        = list(string)
  default     = []
}

variable "alb_deletion_protection" {
  description = "Deletion protection on the upload gateway's load balancer."
  type        = bool
  default     = true
}

variable "alb_access_logs_bucket" {
  description = "S3 bucket for ALB access logs (its policy must allow ELB log delivery). null = no access logs."
  type        = string
  default     = null
}

variable "upload_token_key_param" {
  description = "Name of the SSM SecureString parameter holding the HMAC key of upload-gateway tokens (BERTH_UPLOAD_TOKEN_KEY_PARAM). Create it before apply (README). null = /<name>/upload-token-key."
  type        = string
  default     = null
}

################################################################################
# Authentication
################################################################################

variable "token_signing_key_parameter" {
  description = "Name of the SSM SecureString parameter holding the Ed25519 seed that signs the registry's bearer tokens (BERTH_TOKEN_SIGNING_KEY: base64 of 32 random bytes, e.g. `openssl rand -base64 32`). Create it before apply (README). null = /<name>/token-signing-key."
  type        = string
  default     = null
}

variable "token_lifetime_seconds" {
  description = "Lifetime of the bearer tokens issued by /auth/token (BERTH_TOKEN_LIFETIME_SECONDS)."
  type        = number
  default     = 3600

  validation {
    condition     = var.token_lifetime_seconds >= 1 && var.token_lifetime_seconds <= 43200 && floor(var.token_lifetime_seconds) == var.token_lifetime_seconds
    error_message = "token_lifetime_seconds must be a whole number of seconds from 1 to 43200 (12 hours)."
  }
}

variable "admin_access_key_parameter" {
  description = "Name of an SSM parameter holding the access key id of the bootstrap administrator (BERTH_ADMIN_ACCESS_KEY). With admin_secret_key_parameter, the upload gateway (`berth serve`) makes sure this key exists for user admin at every start. null = no bootstrap key (create users through the management API). Needs the upload gateway."
  type        = string
  default     = null
}

variable "admin_secret_key_parameter" {
  description = "Name of the SSM SecureString parameter holding the secret of the bootstrap administrator key (BERTH_ADMIN_SECRET_KEY). Set together with admin_access_key_parameter; null = no bootstrap key."
  type        = string
  default     = null
}

################################################################################
# Network and private access
################################################################################

variable "vpc_id" {
  description = "VPC of the upload gateway and of the private access endpoints."
  type        = string
  default     = null
}

variable "public_subnet_ids" {
  description = "Subnets (two or more AZs) of the internet-facing gateway load balancer."
  type        = list(string)
  default     = []
}

variable "private_subnet_ids" {
  description = "Subnets (two or more AZs) of the gateway tasks, of the internal load balancer with private_access, and of the execute-api endpoint. Tasks need a route to S3, DynamoDB, SSM, ECR and CloudWatch Logs (NAT gateway or VPC endpoints)."
  type        = list(string)
  default     = []
}

variable "private_route_table_ids" {
  description = "Route tables of the private subnets, for the S3 gateway endpoint (created when this list is not empty)."
  type        = list(string)
  default     = []
}

variable "private_access" {
  description = "Serve the registry only inside the VPC: a private REST API (instead of the public HTTP API) behind an execute-api interface endpoint and a private custom domain, an internal gateway load balancer, and an S3 gateway endpoint so presigned layer downloads stay in the VPC."
  type        = bool
  default     = false
}

variable "private_access_cidrs" {
  description = "CIDRs allowed to reach the execute-api endpoint with private_access. Empty = the VPC CIDR."
  type        = list(string)
  default     = []
}

variable "execute_api_vpc_endpoint_id" {
  description = "Existing execute-api interface endpoint to use with private_access (one endpoint can serve many private APIs). null = create one."
  type        = string
  default     = null
}
