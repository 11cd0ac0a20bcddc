################################################################################
# Registry API: API Gateway HTTP API (public; see api_private.tf for private_access)
################################################################################

locals {
  # Route functions only (the job functions have no route).
  route_functions = { for name in keys(local.routes) : name => local.functions[name] }
}

resource "aws_apigatewayv2_api" "registry" {
  count = local.public_api ? 1 : 0

  name          = var.name
  description   = "Berth OCI registry: one Lambda function per route."
  protocol_type = "HTTP"
  # With a custom domain the default endpoint would be a second, unadvertised registry URL.
  disable_execute_api_endpoint = var.domain_name != null
}

resource "aws_apigatewayv2_integration" "function" {
  for_each = local.public_api ? local.route_functions : {}

  api_id                 = aws_apigatewayv2_api.registry[0].id
  integration_type       = "AWS_PROXY"
  integration_uri        = aws_lambda_function.this[each.key].invoke_arn
  payload_format_version = "2.0"
  timeout_milliseconds   = 30000
}

resource "aws_apigatewayv2_route" "registry" {
  #checkov:skip=CKV_AWS_309:Authorization is the registry's own (OCI token flow answered with a WWW-Authenticate challenge by the functions); an API Gateway authorizer would answer 401 without the challenge docker needs to log in.
  for_each = local.public_api ? local.api_routes : {}

  api_id             = aws_apigatewayv2_api.registry[0].id
  route_key          = each.key
  target             = "integrations/${aws_apigatewayv2_integration.function[each.value].id}"
  authorization_type = "NONE"
}

resource "aws_cloudwatch_log_group" "api_access" {
  #checkov:skip=CKV_AWS_338:Retention is var.log_retention_days (default 30): these are operational request logs; raise it where an audit rule asks for a year.
  name              = "/aws/apigateway/${var.name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
}

resource "aws_apigatewayv2_stage" "registry" {
  count = local.public_api ? 1 : 0

  api_id      = aws_apigatewayv2_api.registry[0].id
  name        = "$default"
  auto_deploy = true

  default_route_settings {
    throttling_burst_limit = var.api_throttling_burst_limit
    throttling_rate_limit  = var.api_throttling_rate_limit
  }

  access_log_settings {
    destination_arn = aws_cloudwatch_log_group.api_access.arn
    # No query string: upload locations carry the _state capability token in it.
    format = jsonencode({
      requestId      = "$context.requestId"
      ip             = "$context.identity.sourceIp"
      requestTime    = "$context.requestTime"
      httpMethod     = "$context.httpMethod"
      path           = "$context.path"
      routeKey       = "$context.routeKey"
      status         = "$context.status"
      responseLength = "$context.responseLength"
      latency        = "$context.integrationLatency"
      error          = "$context.integrationErrorMessage"
      userAgent      = "$context.identity.userAgent"
    })
  }
}

resource "aws_lambda_permission" "api" {
  for_each = local.public_api ? local.route_functions : {}

  statement_id  = "AllowHttpApiInvoke"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.this[each.key].function_name
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_apigatewayv2_api.registry[0].execution_arn}/*/*"
}

################################################################################
# Custom domain (optional)
################################################################################

resource "aws_apigatewayv2_domain_name" "registry" {
  count = local.public_api && var.domain_name != null ? 1 : 0

  domain_name = var.domain_name

  domain_name_configuration {
    certificate_arn = var.certificate_arn
    endpoint_type   = "REGIONAL"
    security_policy = "TLS_1_2"
  }

  lifecycle {
    precondition {
      condition     = var.certificate_arn != null
      error_message = "domain_name needs certificate_arn (an ACM certificate in the same region)."
    }
  }
}

resource "aws_apigatewayv2_api_mapping" "registry" {
  count = local.public_api && var.domain_name != null ? 1 : 0

  api_id      = aws_apigatewayv2_api.registry[0].id
  domain_name = aws_apigatewayv2_domain_name.registry[0].id
  stage       = aws_apigatewayv2_stage.registry[0].id
}

resource "aws_route53_record" "registry" {
  count = local.public_api && var.domain_name != null && var.route53_zone_id != null ? 1 : 0

  zone_id = var.route53_zone_id
  name    = var.domain_name
  type    = "A"

  alias {
    name                   = aws_apigatewayv2_domain_name.registry[0].domain_name_configuration[0].target_domain_name
    zone_id                = aws_apigatewayv2_domain_name.registry[0].domain_name_configuration[0].hosted_zone_id
    evaluate_target_health = false
  }
}
