output "registry_url" {
  description = "Base URL of the registry: the custom domain when set, else the HTTP API's default endpoint (docker login <host>)."
  value       = local.registry_url
}

output "registry_host" {
  description = "Host name to `docker login` to and to tag images with."
  value       = trimprefix(local.registry_url, "https://")
}

output "api_endpoint" {
  description = "Default endpoint of the public HTTP API (disabled when domain_name is set); empty with private_access."
  value       = try(aws_apigatewayv2_api.registry[0].api_endpoint, "")
}

output "api_id" {
  description = "Id of the registry API (HTTP API, or the private REST API with private_access)."
  value       = try(aws_apigatewayv2_api.registry[0].id, aws_api_gateway_rest_api.private[0].id, "")
}

output "registry_dns_target" {
  description = "Where domain_name must point (alias or CNAME) when route53_zone_id is not set."
  value = try(
    aws_apigatewayv2_domain_name.registry[0].domain_name_configuration[0].target_domain_name,
    data.aws_vpc_endpoint.execute_api[0].dns_entry[0].dns_name,
    "",
  )
}

output "route_count" {
  description = "API Gateway routes created (68 + 24 x max_repository_depth: 164 at the default depth 4; the default quota is 300 per API)."
  value       = length(local.api_routes)
}

output "upload_gateway_url" {
  description = "Base URL of the upload gateway (BERTH_UPLOAD_GATEWAY_URL); empty without the gateway."
  value       = local.upload_gateway_url
}

output "upload_gateway_dns_target" {
  description = "Where upload_gateway_domain_name must point (alias or CNAME) when upload_gateway_route53_zone_id is not set."
  value       = try(aws_lb.upload_gateway[0].dns_name, "")
}

output "upload_gateway_cluster" {
  description = "ECS cluster of the upload gateway."
  value       = try(aws_ecs_cluster.upload_gateway[0].name, "")
}

output "upload_gateway_service" {
  description = "ECS service of the upload gateway (aws ecs update-service --force-new-deployment after pushing a new image tag)."
  value       = try(aws_ecs_service.upload_gateway[0].name, "")
}

output "upload_token_key_param" {
  description = "SSM SecureString parameter the functions and the gateway read the upload-token HMAC key from."
  value       = local.upload_token_key_param
}

output "token_signing_key_parameter" {
  description = "SSM SecureString parameter the functions and the gateway read the token signing key (Ed25519 seed) from."
  value       = local.token_signing_key_param
}

output "token_url" {
  description = "The token endpoint (Docker registry token flow): <registry_url>/auth/token."
  value       = "${local.registry_url}/auth/token"
}

output "management_api_url" {
  description = "Base URL of the management API (<registry_url>/api/v1; its OpenAPI document is at /api/v1/openapi.json)."
  value       = "${local.registry_url}/api/v1"
}

output "bucket_name" {
  description = "S3 bucket holding blobs and staged uploads (BERTH_BUCKET)."
  value       = try(aws_s3_bucket.blobs.bucket, "")
}

output "table_name" {
  description = "DynamoDB metadata table (BERTH_TABLE)."
  value       = try(aws_dynamodb_table.metadata.name, "")
}

output "queue_url" {
  description = "SQS job queue (BERTH_QUEUE_URL)."
  value       = try(aws_sqs_queue.jobs.url, "")
}

output "dead_letter_queue_url" {
  description = "SQS dead-letter queue of the job queue."
  value       = try(aws_sqs_queue.jobs_dlq.url, "")
}

output "event_bus_name" {
  description = "EventBridge bus job-worker puts every registry event on (BERTH_EVENT_BUS; source berth.registry): attach your rules here."
  value       = aws_cloudwatch_event_bus.registry.name
}

output "event_bus_arn" {
  description = "ARN of the registry event bus (for rules, cross-account targets and IAM)."
  value       = aws_cloudwatch_event_bus.registry.arn
}

output "secrets_key_ssm_parameter" {
  description = "SSM SecureString parameter the functions and the gateway read the webhook secrets key (BERTH_SECRETS_KEY) from."
  value       = local.secrets_key_param
}

output "function_names" {
  description = "Lambda function name of every route and job function, keyed by route name."
  value       = { for name, function in aws_lambda_function.this : name => function.function_name }
}

output "execute_api_vpc_endpoint_id" {
  description = "execute-api interface endpoint serving the private registry; empty without private_access."
  value       = try(local.execute_api_endpoint_id, "")
}

output "s3_vpc_endpoint_id" {
  description = "S3 gateway endpoint; empty when private_route_table_ids is empty."
  value       = try(aws_vpc_endpoint.s3[0].id, "")
}
