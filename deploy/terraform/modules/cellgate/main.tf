data "aws_region" "current" {}

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

# cellgate takes the client address from the PROXY protocol header only from server.trusted_hops,
# and the NLB's own addresses are in these subnets.
data "aws_subnet" "nlb" {
  for_each = toset(var.nlb_subnet_ids)
  id       = each.value
}

data "aws_ec2_managed_prefix_list" "dynamodb" {
  name = "com.amazonaws.${data.aws_region.current.name}.dynamodb"
}

locals {
  region     = data.aws_region.current.name
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition

  kms_key_arn = var.kms_key_arn != null ? var.kms_key_arn : aws_kms_key.this[0].arn

  nlb_subnet_cidrs = sort([for s in data.aws_subnet.nlb : s.cidr_block])

  # Pull rights are scoped to each image's repository when it is in ECR (cellgate's, and the
  # config writer's or the collector's when mirrored there); an image from anywhere else needs
  # no IAM permission to pull.
  task_images = concat([var.image, var.config_writer_image], var.otel_collector_enabled ? [var.otel_collector_image] : [])
  ecr_repository_arns = distinct(flatten([
    for image in local.task_images : [
      for m in regexall("^([0-9]{12})\\.dkr\\.ecr\\.([a-z0-9-]+)\\.amazonaws\\.com(\\.cn)?/([^:@]+)", image) :
      format("arn:%s:ecr:%s:%s:repository/%s", local.partition, m[1], m[0], m[3])
    ]
  ]))

  config_dir  = "/etc/cellgate"
  config_path = "${local.config_dir}/cellgate.toml"

  # The config's tables, each from its header on ("admin]\naddress = ...", "[listeners]]\n..."),
  # enough to tell which table a `proxy_protocol = true` line is in for the check below.
  config_tables = split("\n[", "\n${replace(var.config_toml, "\r\n", "\n")}")
  proxy_protocol_on = [
    for t in local.config_tables : t if can(regex("(?m)^[ \t]*proxy_protocol[ \t]*=[ \t]*true", t))
  ]

  tags = merge({ "app" = "cellgate" }, var.tags)
}

# The settings the infrastructure depends on and the environment cannot set.
check "config_matches_the_nlb" {
  assert {
    condition     = anytrue([for t in local.proxy_protocol_on : startswith(t, "[listeners]]")])
    error_message = "config_toml has no `proxy_protocol = true` in its [[listeners]]: the NLB target group sends PROXY protocol v2, which a listener without it reads as a malformed request."
  }

  assert {
    condition     = anytrue([for t in local.proxy_protocol_on : startswith(t, "admin]")])
    error_message = "config_toml has no `proxy_protocol = true` under [admin] (admin.proxy_protocol): the NLB's health checks of /readyz start with a PROXY v2 header, which the admin listener without it answers with a 400, failing every target."
  }

  assert {
    condition     = alltrue([for c in local.nlb_subnet_cidrs : strcontains(var.config_toml, c)])
    error_message = "config_toml's server.trusted_hops does not list every NLB subnet CIDR (${join(", ", local.nlb_subnet_cidrs)}): cellgate would refuse the NLB's PROXY headers from the missing ones."
  }
}
