# Three existing cells behind one cellgate fleet. Nothing is created for the cells: their ALBs
# come in as variables and go into cellgate's config as [[cells]] entries.
#
# Why the config file (an SSM parameter the tasks load at start) and not the registry table:
#   - registry writes must go through the CLI's transaction (record conditional on its version,
#     epoch bump, change# item, src/placement/dynamo/write.rs). A Terraform table item would
#     skip the epoch and the change log, so running proxies would not see it until the next
#     full refresh, and the next apply would overwrite whatever operators wrote since (drained
#     cells, canary groups and weights);
#   - config cells are a seed: a registry cell with the same id wins. Operators take a cell over
#     with `cellgate cell put <id> --target ...` (drain, canary groups, weights) and Terraform
#     never fights them;
#   - the config is versioned (SSM parameter history) and a change rolls the service, so a new
#     ALB reaches every task through an ordinary deployment.
# Why not the task's environment: cellgate reads cells only from the file or the registry, and
# a config in one place is easier to review than one spread over variables.

data "aws_subnet" "nlb" {
  for_each = toset(var.public_subnet_ids)
  id       = each.value
}

locals {
  name           = "cellgate"
  table          = "cellgate-registry"
  shutdown_grace = 30

  cell_urls = { for id, c in var.cells : id => "${c.scheme}://${coalesce(c.host, c.alb_dns_name)}" }

  config_toml = templatefile("${path.module}/cellgate.toml.tftpl", {
    shutdown_grace = local.shutdown_grace
    trusted_hops   = jsonencode(sort([for s in data.aws_subnet.nlb : s.cidr_block]))
    certificates   = [for c in var.tls_certificates : c.name]
    base_domains   = jsonencode(var.base_domains)
    issuer         = jsonencode(var.jwt_issuer.issuer)
    audiences      = jsonencode(var.jwt_issuer.audiences)
    jwks_url       = jsonencode(var.jwt_issuer.jwks_url)
    table          = jsonencode(local.table)
    cells          = local.cell_urls
    waves          = { for id, c in var.cells : id => c.wave }
    tiers          = var.limit_tiers
    # The module's output, fed back into its own config_toml: the primary endpoint exists
    # before the config parameter is written. null while fleet limits are off.
    fleet_redis_url = module.cellgate.fleet_redis_url
    fleet_mode      = var.fleet_limits_mode
    # Likewise the usage stream: it exists before the config that names it. null when off.
    metering_stream    = module.cellgate.metering_stream_name
    metering_spool_dir = module.cellgate.metering_spool_dir
    metering_window    = var.metering_window
    region             = var.region
    # And the collector sidecar's OTLP/HTTP endpoint, on the task's loopback. null when off.
    otlp_endpoint      = module.cellgate.otlp_traces_endpoint
    trace_sample_ratio = var.trace_sample_ratio
  })
}

# Fleet limits without tiers would reconcile nothing.
check "fleet_limits_have_tiers" {
  assert {
    condition     = !var.fleet_limits_enabled || length(var.limit_tiers) > 0
    error_message = "fleet_limits_enabled with no limit_tiers: there is no rate to hold fleet-wide."
  }
}

module "cellgate" {
  source = "../../modules/cellgate"

  name   = local.name
  vpc_id = var.vpc_id

  nlb_subnet_ids  = var.public_subnet_ids
  task_subnet_ids = var.private_subnet_ids

  image            = var.image
  config_toml      = local.config_toml
  tls_certificates = var.tls_certificates

  registry_table_name    = local.table
  shutdown_grace_seconds = local.shutdown_grace
  # Both above the 30 s grace: the NLB stops sending new flows during the delay, then SIGTERM
  # starts cellgate's drain, which stopTimeout leaves time to finish.
  deregistration_delay_seconds = 45
  stop_timeout_seconds         = 45

  cell_security_group_ids = compact([for c in var.cells : c.security_group_id])
  cell_ports              = distinct([for c in var.cells : c.scheme == "https" ? 443 : 80])

  create_dynamodb_endpoint          = length(var.private_route_table_ids) > 0
  dynamodb_endpoint_route_table_ids = var.private_route_table_ids

  operator_principal_arns = var.operator_principal_arns

  # Off by default. On: an ElastiCache Valkey primary with a replica in another AZ (the module's
  # elasticache_* defaults), on the private subnets, reachable from the tasks only.
  fleet_limits_enabled = var.fleet_limits_enabled

  # Usage metering (docs/metering-pipeline.md): an on-demand Kinesis stream, "cellgate-usage",
  # under the module's KMS key, 7 days' retention; the tasks may only put records into it.
  metering_stream = {
    enabled = var.metering_enabled
  }

  # Traces (deploy/README.md, "Traces"): an ADOT collector sidecar in each task, exporting to
  # X-Ray; the task role may put trace segments. Off by default.
  otel_collector_enabled = var.traces_enabled

  min_capacity  = 3
  desired_count = 3
  max_capacity  = 30
}
