################################################################################
# Registry API, private variant (var.private_access)
#
# HTTP APIs have neither private endpoints nor resource policies, so the private registry is a
# REST API of endpoint type PRIVATE with the same routes, reached through an execute-api
# interface endpoint, locked to that endpoint by a resource policy, and served at the root of
# a private custom domain (docker needs /v2/ and /auth/token at the host root; a private API's
# default URL has the stage in its path). The routes (/v2, /auth, /api/v1) come from the same
# local.api_routes, as an OpenAPI body: one resource per path prefix (96 at the default depth).
################################################################################

locals {
  private_api = var.private_access

  # OpenAPI paths: "/v2/{r1}/blobs/{digest}" => { get = {...}, head = {...} }.
  private_api_paths = distinct([for key in keys(local.api_routes) : split(" ", key)[1]])

  private_api_openapi = {
    openapi = "3.0.1"
    info    = { title = "${var.name}-private", version = "1" }
    paths = {
      for path in local.private_api_paths : path => {
        for key, fn in local.api_routes : lower(split(" ", key)[0]) => {
          parameters = [
            for param in regexall("\\{([^}]+)\\}", path) : { name = param[0], in = "path", required = true, schema = { type = "string" } }
          ]
          responses = {}
          "x-amazon-apigateway-integration" = {
            type                 = "aws_proxy"
            httpMethod           = "POST"
            uri                  = aws_lambda_function.this[fn].invoke_arn
            payloadFormatVersion = "1.0"
            timeoutInMillis      = 29000
          }
        } if split(" ", key)[1] == path
      }
    }
    # Registry bodies are binary (layers, manifests); pass every body base64-encoded.
    "x-amazon-apigateway-binary-media-types" = ["*/*"]
  }
}

resource "aws_security_group" "execute_api_endpoint" {
  count = local.private_api && var.execute_api_vpc_endpoint_id == null ? 1 : 0

  name        = "${var.name}-execute-api-endpoint"
  description = "HTTPS from the VPC to the execute-api endpoint of the private Berth registry"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "execute_api_endpoint" {
  for_each = local.private_api && var.execute_api_vpc_endpoint_id == null ? toset(local.private_client_cidrs) : toset([])

  security_group_id = aws_security_group.execute_api_endpoint[0].id
  description       = "HTTPS from registry clients"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = each.value
}

locals {
  private_client_cidrs = length(var.private_access_cidrs) > 0 ? var.private_access_cidrs : compact([try(data.aws_vpc.this[0].cidr_block, null)])
}

resource "aws_vpc_endpoint" "execute_api" {
  count = local.private_api && var.execute_api_vpc_endpoint_id == null ? 1 : 0

  vpc_id             = var.vpc_id
  service_name       = "com.amazonaws.${local.region}.execute-api"
  vpc_endpoint_type  = "Interface"
  subnet_ids         = var.private_subnet_ids
  security_group_ids = [aws_security_group.execute_api_endpoint[0].id]
  # Private DNS would send every *.execute-api name in the VPC (public APIs too) to this endpoint;
  # the registry is reached through its private custom domain instead.
  private_dns_enabled = false

  lifecycle {
    precondition {
      condition     = var.vpc_id != null && length(var.private_subnet_ids) > 0
      error_message = "private_access needs vpc_id and private_subnet_ids (or execute_api_vpc_endpoint_id)."
    }
  }
}

locals {
  execute_api_endpoint_id = local.private_api ? coalesce(var.execute_api_vpc_endpoint_id, try(aws_vpc_endpoint.execute_api[0].id, null)) : null
}

data "aws_vpc_endpoint" "execute_api" {
  count = local.private_api ? 1 : 0

  id = local.execute_api_endpoint_id
}

resource "aws_api_gateway_rest_api" "private" {
  count = local.private_api ? 1 : 0

  name               = "${var.name}-private"
  description        = "Berth OCI registry (private): one Lambda function per route."
  body               = jsonencode(local.private_api_openapi)
  binary_media_types = ["*/*"]
  put_rest_api_mode  = "overwrite"

  endpoint_configuration {
    types            = ["PRIVATE"]
    vpc_endpoint_ids = [local.execute_api_endpoint_id]
  }
}

# Invoke only through the execute-api VPC endpoint: the policy of both the private API and
# its private custom domain.
data "aws_iam_policy_document" "private_api" {
  count = local.private_api ? 1 : 0

  statement {
    sid       = "AllowInvoke"
    actions   = ["execute-api:Invoke"]
    resources = ["execute-api:/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }
  }

  statement {
    sid       = "DenyOutsideTheEndpoint"
    effect    = "Deny"
    actions   = ["execute-api:Invoke"]
    resources = ["execute-api:/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "StringNotEquals"
      variable = "aws:SourceVpce"
      values   = [local.execute_api_endpoint_id]
    }
  }
}

resource "aws_api_gateway_rest_api_policy" "private" {
  count = local.private_api ? 1 : 0

  rest_api_id = aws_api_gateway_rest_api.private[0].id
  policy      = data.aws_iam_policy_document.private_api[0].json
}

resource "aws_api_gateway_deployment" "private" {
  count = local.private_api ? 1 : 0

  rest_api_id = aws_api_gateway_rest_api.private[0].id

  triggers = {
    redeployment = sha1(jsonencode([
      aws_api_gateway_rest_api.private[0].body,
      aws_api_gateway_rest_api_policy.private[0].policy,
    ]))
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_api_gateway_stage" "private" {
  #checkov:skip=CKV2_AWS_51:Clients are docker and OCI tools inside the VPC, which cannot present API Gateway client certificates; the endpoint is already reachable only through the VPC endpoint.
  #checkov:skip=CKV2_AWS_4:Execution logging needs the account-wide API Gateway CloudWatch role (aws_api_gateway_account), which this stack must not take over; access logs are on.
  count = local.private_api ? 1 : 0

  rest_api_id          = aws_api_gateway_rest_api.private[0].id
  deployment_id        = aws_api_gateway_deployment.private[0].id
  stage_name           = "registry"
  xray_tracing_enabled = var.enable_xray_tracing

  access_log_settings {
    destination_arn = aws_cloudwatch_log_group.api_access.arn
    # No query string: upload locations carry the _state capability token in it.
    format = jsonencode({
      requestId      = "$context.requestId"
      ip             = "$context.identity.sourceIp"
      vpce           = "$context.identity.vpceId"
      requestTime    = "$context.requestTime"
      httpMethod     = "$context.httpMethod"
      path           = "$context.path"
      resourcePath   = "$context.resourcePath"
      status         = "$context.status"
      responseLength = "$context.responseLength"
      latency        = "$context.integrationLatency"
      userAgent      = "$context.identity.userAgent"
    })
  }
}

resource "aws_api_gateway_method_settings" "private" {
  count = local.private_api ? 1 : 0

  rest_api_id = aws_api_gateway_rest_api.private[0].id
  stage_name  = aws_api_gateway_stage.private[0].stage_name
  method_path = "*/*"

  settings {
    metrics_enabled        = true
    caching_enabled        = false
    throttling_burst_limit = var.api_throttling_burst_limit
    throttling_rate_limit  = var.api_throttling_rate_limit
  }
}

resource "aws_lambda_permission" "private_api" {
  for_each = local.private_api ? local.route_functions : {}

  statement_id  = "AllowPrivateRestApiInvoke"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.this[each.key].function_name
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_api_gateway_rest_api.private[0].execution_arn}/*/*"
}

################################################################################
# Private custom domain
################################################################################

resource "aws_api_gateway_domain_name" "private" {
  count = local.private_api ? 1 : 0

  domain_name     = var.domain_name
  certificate_arn = var.certificate_arn
  security_policy = "TLS_1_2"
  policy          = data.aws_iam_policy_document.private_api[0].json

  endpoint_configuration {
    types = ["PRIVATE"]
  }

  lifecycle {
    precondition {
      condition     = var.domain_name != null && var.certificate_arn != null
      error_message = "private_access needs domain_name and certificate_arn: docker requires /v2/ at the root of the registry host."
    }
  }
}

resource "aws_api_gateway_domain_name_access_association" "private" {
  count = local.private_api ? 1 : 0

  domain_name_arn                = aws_api_gateway_domain_name.private[0].arn
  access_association_source      = local.execute_api_endpoint_id
  access_association_source_type = "VPCE"
}

resource "aws_api_gateway_base_path_mapping" "private" {
  count = local.private_api ? 1 : 0

  api_id         = aws_api_gateway_rest_api.private[0].id
  stage_name     = aws_api_gateway_stage.private[0].stage_name
  domain_name    = aws_api_gateway_domain_name.private[0].domain_name
  domain_name_id = aws_api_gateway_domain_name.private[0].domain_name_id
}

resource "aws_route53_record" "private_registry" {
  count = local.private_api && var.route53_zone_id != null ? 1 : 0

  zone_id = var.route53_zone_id
  name    = var.domain_name
  type    = "A"

  alias {
    name                   = data.aws_vpc_endpoint.execute_api[0].dns_entry[0].dns_name
    zone_id                = data.aws_vpc_endpoint.execute_api[0].dns_entry[0].hosted_zone_id
    evaluate_target_health = false
  }

  depends_on = [aws_api_gateway_domain_name_access_association.private]
}
