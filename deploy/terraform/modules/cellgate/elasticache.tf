# Fleet-wide tenant limits (`[limits.fleet]`): one Valkey (or Redis OSS) primary that every
# task reconciles its admissions with every sync_interval and heartbeats into, off the request
# path. Off unless var.fleet_limits_enabled; nothing below exists otherwise.
#
#   - cluster mode disabled: cellgate talks to one primary endpoint (per-tenant keys, Lua
#     scripts, TIME, a membership sorted set), so there is one shard; replicas are only for
#     failover;
#   - TLS in transit (required) and an AUTH token, which ElastiCache accepts only with TLS. The
#     token is generated here, kept in Secrets Manager under the module's CMK, and reaches
#     cellgate as CELLGATE_REDIS_PASSWORD through the task definition's `secrets` (the execution
#     role reads that one secret); it is never in the config file;
#   - the config gets `redis_url = "rediss://<primary endpoint>:6379"`: the caller renders it
#     into config_toml from the fleet_redis_url output (a check below warns when it does not);
#   - reachable on 6379 from the tasks' security group only.
#
# The token is in the Terraform state (random_password and the replication group both hold it),
# like every other secret Terraform generates: the state must be access-controlled anyway.

locals {
  fleet_redis_port = 6379

  elasticache_engine_version = coalesce(
    var.elasticache_engine_version,
    var.elasticache_engine == "valkey" ? "8.0" : "7.1",
  )
  elasticache_subnet_ids = length(var.elasticache_subnet_ids) > 0 ? var.elasticache_subnet_ids : var.task_subnet_ids
  elasticache_multi_az   = var.elasticache_num_cache_clusters > 1

  elasticache_primary_endpoint = one(aws_elasticache_replication_group.fleet[*].primary_endpoint_address)
  fleet_redis_url              = local.elasticache_primary_endpoint == null ? null : "rediss://${local.elasticache_primary_endpoint}:${local.fleet_redis_port}"
}

# ElastiCache AUTH tokens: 16-128 printable characters, and of the non-alphanumerics only
# !&#$^<>- are allowed; 64 alphanumerics (about 380 bits) need none of them.
resource "random_password" "fleet_redis_auth" {
  count = var.fleet_limits_enabled ? 1 : 0

  length  = 64
  special = false
}

resource "aws_secretsmanager_secret" "fleet_redis_auth" {
  #checkov:skip=CKV2_AWS_57:The secret is the replication group's AUTH token, which Terraform sets; a Secrets Manager rotation Lambda would change it behind Terraform's back and the tasks read it only at start. It is rotated with Terraform (deploy/RUNBOOK.md, "Rotate the Redis AUTH token").
  count = var.fleet_limits_enabled ? 1 : 0

  # A prefix, not a fixed name: a deleted secret's name stays taken for its recovery window,
  # which would block turning fleet limits off and on again.
  name_prefix = "${var.name}/fleet-redis-auth-"
  description = "AUTH token of ${var.name}'s fleet-limits ElastiCache, CELLGATE_REDIS_PASSWORD in the tasks"
  kms_key_id  = local.kms_key_arn
  tags        = local.tags
}

resource "aws_secretsmanager_secret_version" "fleet_redis_auth" {
  count = var.fleet_limits_enabled ? 1 : 0

  secret_id     = aws_secretsmanager_secret.fleet_redis_auth[0].id
  secret_string = random_password.fleet_redis_auth[0].result
}

resource "aws_elasticache_subnet_group" "fleet" {
  count = var.fleet_limits_enabled ? 1 : 0

  name        = "${var.name}-fleet"
  description = "cellgate fleet limits: private subnets"
  subnet_ids  = local.elasticache_subnet_ids
  tags        = local.tags
}

resource "aws_security_group" "elasticache" {
  count = var.fleet_limits_enabled ? 1 : 0

  name        = "${var.name}-fleet-redis"
  description = "cellgate fleet limits Redis: from the cellgate tasks only"
  vpc_id      = var.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-fleet-redis" })
}

# No egress rule: the nodes answer connections, they open none (replication between them is
# ElastiCache's own network).
resource "aws_vpc_security_group_ingress_rule" "elasticache_from_tasks" {
  count = var.fleet_limits_enabled ? 1 : 0

  security_group_id            = aws_security_group.elasticache[0].id
  description                  = "cellgate tasks (fleet limits sync and heartbeat, TLS)"
  referenced_security_group_id = aws_security_group.task.id
  ip_protocol                  = "tcp"
  from_port                    = local.fleet_redis_port
  to_port                      = local.fleet_redis_port
}

resource "aws_vpc_security_group_egress_rule" "task_to_elasticache" {
  count = var.fleet_limits_enabled ? 1 : 0

  security_group_id            = aws_security_group.task.id
  description                  = "fleet limits Redis (TLS)"
  referenced_security_group_id = aws_security_group.elasticache[0].id
  ip_protocol                  = "tcp"
  from_port                    = local.fleet_redis_port
  to_port                      = local.fleet_redis_port
}

resource "aws_elasticache_replication_group" "fleet" {
  count = var.fleet_limits_enabled ? 1 : 0

  replication_group_id = "${var.name}-fleet"
  description          = "cellgate fleet-wide tenant limits (${var.name})"

  engine         = var.elasticache_engine
  engine_version = local.elasticache_engine_version
  node_type      = var.elasticache_node_type
  port           = local.fleet_redis_port
  # One shard: no parameter group is named, so the engine's default one (cluster-enabled no).
  cluster_mode       = "disabled"
  num_cache_clusters = var.elasticache_num_cache_clusters

  # With a replica, a failed primary is replaced within about a minute, the replica in another
  # AZ; the primary endpoint's DNS name follows it. Meanwhile each task's breaker opens and it
  # enforces its share of every limit locally.
  automatic_failover_enabled = local.elasticache_multi_az
  multi_az_enabled           = local.elasticache_multi_az

  subnet_group_name  = aws_elasticache_subnet_group.fleet[0].name
  security_group_ids = [aws_security_group.elasticache[0].id]

  transit_encryption_enabled = true
  transit_encryption_mode    = "required"
  auth_token                 = random_password.fleet_redis_auth[0].result
  # A new token is added beside the old one, which keeps working until the tasks have rolled;
  # see deploy/RUNBOOK.md, "Rotate the Redis AUTH token".
  auth_token_update_strategy = "ROTATE"

  at_rest_encryption_enabled = true
  kms_key_id                 = local.kms_key_arn

  # The keys are short-lived counters and a membership set that the fleet rebuilds within a
  # window: a snapshot restored later would only be stale, so none is kept.
  snapshot_retention_limit = 0

  auto_minor_version_upgrade = true
  maintenance_window         = var.elasticache_maintenance_window
  apply_immediately          = var.elasticache_apply_immediately

  tags = local.tags

  lifecycle {
    precondition {
      condition     = var.elasticache_num_cache_clusters == 1 || length(local.elasticache_subnet_ids) >= 2
      error_message = "elasticache_num_cache_clusters > 1 (Multi-AZ) needs subnets in at least two AZs (elasticache_subnet_ids, or task_subnet_ids)."
    }
  }
}

# The config is the caller's (config_toml): it must point [limits.fleet] at this primary, and
# must not have [limits.fleet] without it (no Redis, and no password in the task).
check "config_matches_the_fleet_redis" {
  assert {
    condition     = !var.fleet_limits_enabled || strcontains(var.config_toml, coalesce(local.fleet_redis_url, "rediss://"))
    error_message = "fleet_limits_enabled, but config_toml has no [limits.fleet] redis_url = \"${coalesce(local.fleet_redis_url, "rediss://<primary endpoint>:6379")}\" (the fleet_redis_url output): the tasks would not use this Redis."
  }

  assert {
    condition     = var.fleet_limits_enabled || !strcontains(var.config_toml, "[limits.fleet]")
    error_message = "config_toml has a [limits.fleet] section but fleet_limits_enabled is false: the module creates no Redis and passes no CELLGATE_REDIS_PASSWORD."
  }
}
