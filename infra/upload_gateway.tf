################################################################################
# Upload gateway: the same router as a long-running process (`berth serve --backend aws`) on
# ECS Fargate behind an ALB, on its own host name. It exists because no Lambda front door takes
# a request body over ~4.5 MiB, and docker sends a whole layer in one request
# (shared/research/upload-path.md sections 0 and 7).
################################################################################

locals {
  # Clients reach the gateway only through the upload Location handed out by upload-start, so
  # the task needs exactly what the upload routes need.
  upload_gateway_functions       = ["upload-start", "upload-patch", "upload-put", "upload-status", "upload-cancel"]
  upload_gateway_permission_sets = distinct(flatten([for name in local.upload_gateway_functions : local.function_permission_sets[name]]))

  upload_gateway_ingress_cidrs = (
    length(var.upload_gateway_ingress_cidrs) > 0 ? var.upload_gateway_ingress_cidrs :
    var.private_access ? compact([try(data.aws_vpc.this[0].cidr_block, null)]) : ["0.0.0.0/0"]
  )

  # Behind the ALB every connection comes from one of its node addresses, so berth serve's
  # per-address connection limit would throttle all clients together: it is raised to the
  # process-wide limit. The ALB reuses its connections to a target for up to its idle timeout,
  # so the target must keep them open longer (else requests meet closed connections: 502); the
  # ALB itself reads client headers and bounds client connections.
  upload_gateway_environment = merge(local.berth_environment, {
    BERTH_LOG_FORMAT             = "json"
    BERTH_MAX_CONNECTIONS_PER_IP = "4096"
    BERTH_HEADER_TIMEOUT_SECONDS = tostring(var.upload_gateway_idle_timeout_seconds + 60)
    BERTH_IDLE_TIMEOUT_SECONDS   = tostring(var.upload_gateway_idle_timeout_seconds + 60)
  })

  # ECS resolves these SSM parameters at task start, so no secret sits in the task definition.
  upload_gateway_secrets = merge(
    {
      BERTH_UPLOAD_TOKEN_KEY  = local.upload_token_key_param_arn
      BERTH_TOKEN_SIGNING_KEY = local.token_signing_key_param_arn
      BERTH_SECRETS_KEY       = local.secrets_key_param_arn
    },
    local.admin_key_params,
  )
}

resource "aws_ecs_cluster" "upload_gateway" {
  count = local.upload_gateway ? 1 : 0

  name = "${var.name}-upload-gateway"

  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_cloudwatch_log_group" "upload_gateway" {
  #checkov:skip=CKV_AWS_338:Retention is var.log_retention_days (default 30): these are operational request logs; raise it where an audit rule asks for a year.
  count = local.upload_gateway ? 1 : 0

  name              = "/ecs/${var.name}-upload-gateway"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
}

################################################################################
# Task roles
################################################################################

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

# Used by ECS itself: pull the image, write the container's logs, resolve the secrets.
resource "aws_iam_role" "upload_gateway_execution" {
  count = local.upload_gateway ? 1 : 0

  name               = "${var.name}-upload-gateway-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

resource "aws_iam_role_policy_attachment" "upload_gateway_execution" {
  count = local.upload_gateway ? 1 : 0

  role       = aws_iam_role.upload_gateway_execution[0].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

data "aws_iam_policy_document" "upload_gateway_execution" {
  count = local.upload_gateway ? 1 : 0

  statement {
    sid       = "Secrets"
    actions   = ["ssm:GetParameters"]
    resources = values(local.upload_gateway_secrets)
  }

  dynamic "statement" {
    for_each = var.kms_key_arn != null ? [var.kms_key_arn] : []

    content {
      sid       = "Kms"
      actions   = ["kms:Decrypt"]
      resources = [statement.value]
    }
  }
}

resource "aws_iam_role_policy" "upload_gateway_execution" {
  count = local.upload_gateway ? 1 : 0

  name   = "berth-secrets"
  role   = aws_iam_role.upload_gateway_execution[0].id
  policy = data.aws_iam_policy_document.upload_gateway_execution[0].json
}

# Used by the berth process.
resource "aws_iam_role" "upload_gateway_task" {
  count = local.upload_gateway ? 1 : 0

  name               = "${var.name}-upload-gateway-task"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "upload_gateway_task" {
  count = local.upload_gateway ? 1 : 0

  dynamic "statement" {
    for_each = local.upload_gateway_permission_sets

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

resource "aws_iam_role_policy" "upload_gateway_task" {
  count = local.upload_gateway ? 1 : 0

  name   = "berth"
  role   = aws_iam_role.upload_gateway_task[0].id
  policy = data.aws_iam_policy_document.upload_gateway_task[0].json
}

################################################################################
# Task definition and service
################################################################################

resource "aws_ecs_task_definition" "upload_gateway" {
  count = local.upload_gateway ? 1 : 0

  family                   = "${var.name}-upload-gateway"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.upload_gateway_cpu
  memory                   = var.upload_gateway_memory
  execution_role_arn       = aws_iam_role.upload_gateway_execution[0].arn
  task_role_arn            = aws_iam_role.upload_gateway_task[0].arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "ARM64"
  }

  container_definitions = jsonencode([
    {
      name                   = "upload-gateway"
      image                  = var.upload_gateway_image
      essential              = true
      entryPoint             = var.upload_gateway_command
      readonlyRootFilesystem = true
      portMappings           = [{ containerPort = 8080, protocol = "tcp" }]
      environment            = [for key in sort(keys(local.upload_gateway_environment)) : { name = key, value = local.upload_gateway_environment[key] }]
      secrets                = [for key in sort(keys(local.upload_gateway_secrets)) : { name = key, valueFrom = local.upload_gateway_secrets[key] }]
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          "awslogs-group"         = aws_cloudwatch_log_group.upload_gateway[0].name
          "awslogs-region"        = local.region
          "awslogs-stream-prefix" = "upload-gateway"
        }
      }
    }
  ])

  lifecycle {
    precondition {
      condition     = var.upload_gateway_image != null
      error_message = "enable_upload_gateway needs upload_gateway_image (an arm64 image with berth on PATH)."
    }

    precondition {
      condition     = (var.admin_access_key_parameter == null) == (var.admin_secret_key_parameter == null)
      error_message = "Set both admin_access_key_parameter and admin_secret_key_parameter, or neither (berth serve refuses one without the other)."
    }
  }
}

resource "aws_ecs_service" "upload_gateway" {
  count = local.upload_gateway ? 1 : 0

  name                               = "${var.name}-upload-gateway"
  cluster                            = aws_ecs_cluster.upload_gateway[0].id
  task_definition                    = aws_ecs_task_definition.upload_gateway[0].arn
  desired_count                      = var.upload_gateway_desired_count
  launch_type                        = "FARGATE"
  platform_version                   = "LATEST"
  health_check_grace_period_seconds  = 30
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  propagate_tags                     = "SERVICE"

  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = [aws_security_group.upload_gateway_tasks[0].id]
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.upload_gateway[0].arn
    container_name   = "upload-gateway"
    container_port   = 8080
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  depends_on = [aws_lb_listener.upload_gateway_https]

  lifecycle {
    precondition {
      condition     = var.vpc_id != null && length(var.private_subnet_ids) > 0
      error_message = "enable_upload_gateway needs vpc_id and private_subnet_ids."
    }
  }
}

################################################################################
# Load balancer
################################################################################

resource "aws_security_group" "upload_gateway_alb" {
  count = local.upload_gateway ? 1 : 0

  name        = "${var.name}-upload-gateway-alb"
  description = "HTTPS from registry clients to the Berth upload gateway load balancer"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "upload_gateway_alb_https" {
  for_each = local.upload_gateway ? toset(local.upload_gateway_ingress_cidrs) : toset([])

  security_group_id = aws_security_group.upload_gateway_alb[0].id
  description       = "HTTPS from registry clients"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "upload_gateway_alb_to_tasks" {
  count = local.upload_gateway ? 1 : 0

  security_group_id            = aws_security_group.upload_gateway_alb[0].id
  description                  = "To the gateway tasks"
  ip_protocol                  = "tcp"
  from_port                    = 8080
  to_port                      = 8080
  referenced_security_group_id = aws_security_group.upload_gateway_tasks[0].id
}

resource "aws_security_group" "upload_gateway_tasks" {
  count = local.upload_gateway ? 1 : 0

  name        = "${var.name}-upload-gateway-tasks"
  description = "Berth upload gateway tasks: from the load balancer, out to AWS APIs"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "upload_gateway_tasks_from_alb" {
  count = local.upload_gateway ? 1 : 0

  security_group_id            = aws_security_group.upload_gateway_tasks[0].id
  description                  = "From the upload gateway load balancer"
  ip_protocol                  = "tcp"
  from_port                    = 8080
  to_port                      = 8080
  referenced_security_group_id = aws_security_group.upload_gateway_alb[0].id
}

resource "aws_vpc_security_group_egress_rule" "upload_gateway_tasks_https" {
  count = local.upload_gateway ? 1 : 0

  security_group_id = aws_security_group.upload_gateway_tasks[0].id
  description       = "HTTPS to S3, DynamoDB, SSM, ECR and CloudWatch Logs (through NAT or VPC endpoints)"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_lb" "upload_gateway" {
  #checkov:skip=CKV2_AWS_28:A WAF inspects at most the first 64 KB of a body and would either pass multi-GB layer uploads uninspected or block them; requests are authorized by the HMAC capability token in their URL.
  count = local.upload_gateway ? 1 : 0

  name                       = "${var.name}-upload-gw"
  internal                   = var.private_access
  load_balancer_type         = "application"
  security_groups            = [aws_security_group.upload_gateway_alb[0].id]
  subnets                    = var.private_access ? var.private_subnet_ids : var.public_subnet_ids
  idle_timeout               = var.upload_gateway_idle_timeout_seconds
  drop_invalid_header_fields = true
  enable_deletion_protection = var.alb_deletion_protection

  dynamic "access_logs" {
    for_each = var.alb_access_logs_bucket != null ? [var.alb_access_logs_bucket] : []

    content {
      bucket  = access_logs.value
      prefix  = "${var.name}-upload-gateway"
      enabled = true
    }
  }

  lifecycle {
    precondition {
      condition     = length(var.private_access ? var.private_subnet_ids : var.public_subnet_ids) >= 2
      error_message = "The upload gateway load balancer needs subnets in two or more AZs (public_subnet_ids, or private_subnet_ids with private_access)."
    }
  }
}

resource "aws_lb_target_group" "upload_gateway" {
  count = local.upload_gateway ? 1 : 0

  name        = "${var.name}-upload-gw"
  port        = 8080
  protocol    = "HTTP"
  target_type = "ip"
  vpc_id      = var.vpc_id
  # Let an upload in flight finish before a replaced task is stopped.
  deregistration_delay = min(var.upload_gateway_idle_timeout_seconds, 3600)

  health_check {
    path                = "/v2/"
    matcher             = "200,401"
    interval            = 15
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }
}

resource "aws_lb_listener" "upload_gateway_https" {
  count = local.upload_gateway ? 1 : 0

  load_balancer_arn = aws_lb.upload_gateway[0].arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.upload_gateway_certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.upload_gateway[0].arn
  }

  lifecycle {
    precondition {
      condition     = var.upload_gateway_certificate_arn != null
      error_message = "enable_upload_gateway needs upload_gateway_certificate_arn."
    }
  }
}

resource "aws_route53_record" "upload_gateway" {
  count = local.upload_gateway && var.upload_gateway_domain_name != null && var.upload_gateway_route53_zone_id != null ? 1 : 0

  zone_id = var.upload_gateway_route53_zone_id
  name    = var.upload_gateway_domain_name
  type    = "A"

  alias {
    name                   = aws_lb.upload_gateway[0].dns_name
    zone_id                = aws_lb.upload_gateway[0].zone_id
    evaluate_target_health = true
  }
}
