################################################################################
# VPC (given, not created): its CIDR is the default client range with private_access
################################################################################

data "aws_vpc" "this" {
  count = var.vpc_id != null ? 1 : 0

  id = var.vpc_id
}

################################################################################
# S3 gateway endpoint
#
# Keeps presigned layer downloads (blob GET -> 307 -> S3) from clients in the VPC, and the
# gateway tasks' part uploads, on the AWS network instead of a NAT gateway. Presigned URLs use
# the regional S3 host name, which the endpoint's route serves without any DNS change.
################################################################################

resource "aws_vpc_endpoint" "s3" {
  count = length(var.private_route_table_ids) > 0 ? 1 : 0

  vpc_id            = var.vpc_id
  service_name      = "com.amazonaws.${local.region}.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = var.private_route_table_ids

  lifecycle {
    precondition {
      condition     = var.vpc_id != null
      error_message = "private_route_table_ids needs vpc_id."
    }
  }
}
