################################################################################
# Registry events
#
# Every registry event (artifact pushed, pulled or deleted; tag created or deleted; image
# deleted; cleanup run finished; replication execution finished) goes through the job queue to
# job-worker, which delivers it to the webhook policies that subscribe to it and also puts it on
# this bus (BERTH_EVENT_BUS): source "berth.registry", detail-types "Berth Image Action",
# "Berth Tag Action", "Berth Cleanup Action", "Berth Replication Action" and "Berth Webhook
# Ping". job-worker is the only function allowed events:PutEvents on it (functions.tf,
# events_put); api-webhook-test sends its ping itself and knows no bus. No rule is created
# here: infra teams route the events with their own rules on this bus (README, "Registry events
# and webhooks").
################################################################################

locals {
  event_bus_name = coalesce(var.event_bus_name, "${var.name}-events")
}

resource "aws_cloudwatch_event_bus" "registry" {
  name        = local.event_bus_name
  description = "Berth registry events (source berth.registry), put by ${var.name}-job-worker."
  # null = an AWS owned key. A customer managed key's policy must let EventBridge
  # (events.amazonaws.com) use it (README).
  kms_key_identifier = var.kms_key_arn
}
