################################################################################
# Job queue
################################################################################

resource "aws_sqs_queue" "jobs_dlq" {
  name                      = "${var.name}-jobs-dlq"
  message_retention_seconds = 1209600 # 14 days, the maximum: time to look at a poison job
  sqs_managed_sse_enabled   = var.kms_key_arn == null ? true : null
  kms_master_key_id         = var.kms_key_arn
}

resource "aws_sqs_queue" "jobs" {
  name = "${var.name}-jobs"
  # AWS asks for at least 6x the consumer's timeout, so a throttled or retried batch is not
  # delivered twice while the first invocation still runs.
  visibility_timeout_seconds = 6 * local.functions["job-worker"].timeout_seconds
  message_retention_seconds  = 345600 # 4 days
  sqs_managed_sse_enabled    = var.kms_key_arn == null ? true : null
  kms_master_key_id          = var.kms_key_arn

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.jobs_dlq.arn
    maxReceiveCount     = var.queue_max_receive_count
  })
}

resource "aws_sqs_queue_redrive_allow_policy" "jobs_dlq" {
  queue_url = aws_sqs_queue.jobs_dlq.id

  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.jobs.arn]
  })
}

resource "aws_lambda_event_source_mapping" "job_worker" {
  event_source_arn                   = aws_sqs_queue.jobs.arn
  function_name                      = aws_lambda_function.this["job-worker"].arn
  batch_size                         = var.job_worker_batch_size
  maximum_batching_window_in_seconds = 1
  # The worker returns the failed message ids; the rest of the batch is deleted.
  function_response_types = ["ReportBatchItemFailures"]

  scaling_config {
    maximum_concurrency = var.job_worker_max_concurrency
  }

  # The worker must be allowed to receive before the mapping is enabled.
  depends_on = [aws_iam_role_policy.function]
}

################################################################################
# Schedule
################################################################################

resource "aws_cloudwatch_event_rule" "job_scheduler" {
  name                = "${var.name}-job-scheduler"
  description         = "Triggers ${var.name}-job-scheduler, which enqueues Berth's periodic jobs (upload expiry, garbage collection)."
  schedule_expression = var.scheduler_rate
}

resource "aws_cloudwatch_event_target" "job_scheduler" {
  rule = aws_cloudwatch_event_rule.job_scheduler.name
  arn  = aws_lambda_function.this["job-scheduler"].arn

  retry_policy {
    maximum_retry_attempts       = 2
    maximum_event_age_in_seconds = 600
  }
}

resource "aws_lambda_permission" "job_scheduler" {
  statement_id  = "AllowEventBridgeSchedule"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.this["job-scheduler"].function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.job_scheduler.arn
}
