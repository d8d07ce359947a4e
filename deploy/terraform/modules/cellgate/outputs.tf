output "nlb_dns_name" {
  description = "DNS name of the NLB: point the public names (CNAME, or a Route 53 alias with nlb_zone_id) at it."
  value       = aws_lb.this.dns_name
}

output "nlb_zone_id" {
  description = "Route 53 hosted zone of the NLB, for alias records."
  value       = aws_lb.this.zone_id
}

output "nlb_arn" {
  description = "ARN of the NLB."
  value       = aws_lb.this.arn
}

output "nlb_subnet_cidrs" {
  description = "CIDRs of the NLB's subnets: exactly what cellgate's server.trusted_hops must list."
  value       = local.nlb_subnet_cidrs
}

output "target_group_arn" {
  description = "ARN of the TCP target group (PROXY protocol v2) the tasks register in."
  value       = aws_lb_target_group.tls.arn
}

output "registry_table_name" {
  description = "Registry table name: --table / CELLGATE_REGISTRY_TABLE for the operator CLI."
  value       = aws_dynamodb_table.registry.name
}

output "registry_table_arn" {
  description = "Registry table ARN."
  value       = aws_dynamodb_table.registry.arn
}

output "registry_stream_arn" {
  description = "ARN of the registry's stream, for other consumers (null unless registry_stream_enabled)."
  value       = var.registry_stream_enabled ? aws_dynamodb_table.registry.stream_arn : null
}

output "kms_key_arn" {
  description = "KMS key encrypting the table, the log group and the config parameter."
  value       = local.kms_key_arn
}

output "task_security_group_id" {
  description = "Security group of the tasks: the cells' ALB security groups must allow ingress from it."
  value       = aws_security_group.task.id
}

output "nlb_security_group_id" {
  description = "Security group of the NLB."
  value       = aws_security_group.nlb.id
}

output "task_role_arn" {
  description = "Role the proxy runs as (registry read only; with metering_stream, PutRecords on the usage stream; with the collector's X-Ray export, PutTraceSegments)."
  value       = aws_iam_role.task.arn
}

output "execution_role_arn" {
  description = "Role ECS uses to pull the image, write logs and read the config and certificate secrets."
  value       = aws_iam_role.execution.arn
}

output "operator_role_arn" {
  description = "Role for the CLI's registry writes (null when operator_principal_arns is empty)."
  value       = one(aws_iam_role.operator[*].arn)
}

output "config_parameter_name" {
  description = "SSM parameter holding the config the tasks load."
  value       = aws_ssm_parameter.config.name
}

output "log_group_name" {
  description = "CloudWatch log group of the tasks (cellgate/ streams: access log and application log; config-writer/ streams: the init container; otel-collector/ streams: the collector sidecar, with otel_collector_enabled)."
  value       = aws_cloudwatch_log_group.this.name
}

output "cluster_name" {
  description = "ECS cluster name."
  value       = aws_ecs_cluster.this.name
}

output "service_name" {
  description = "ECS service name."
  value       = aws_ecs_service.this.name
}

output "fleet_redis_url" {
  description = "What [limits.fleet] redis_url must be in config_toml: rediss://<primary endpoint>:6379 (null unless fleet_limits_enabled). The password reaches the tasks as CELLGATE_REDIS_PASSWORD."
  value       = local.fleet_redis_url
}

output "elasticache_primary_endpoint" {
  description = "Primary endpoint address of the fleet-limits replication group; it follows a failover (null unless fleet_limits_enabled)."
  value       = local.elasticache_primary_endpoint
}

output "elasticache_replication_group_id" {
  description = "ID of the fleet-limits replication group, for the aws elasticache CLI (null unless fleet_limits_enabled)."
  value       = one(aws_elasticache_replication_group.fleet[*].id)
}

output "elasticache_security_group_id" {
  description = "Security group of the fleet-limits replication group: ingress on 6379 from the task group only (null unless fleet_limits_enabled)."
  value       = one(aws_security_group.elasticache[*].id)
}

output "elasticache_auth_secret_arn" {
  description = "Secrets Manager secret holding the AUTH token, passed to the tasks as CELLGATE_REDIS_PASSWORD (null unless fleet_limits_enabled)."
  value       = one(aws_secretsmanager_secret.fleet_redis_auth[*].arn)
}

output "metering_stream_name" {
  description = "Name of the usage-event Kinesis stream: what [metering.kinesis] stream must be in config_toml (null unless metering_stream.enabled)."
  value       = one(aws_kinesis_stream.metering[*].name)
}

output "metering_stream_arn" {
  description = "ARN of the usage-event Kinesis stream, for consumers (Firehose, a billing reader): they need kinesis:GetRecords and friends on it and kms:Decrypt on kms_key_arn through Kinesis (null unless metering_stream.enabled)."
  value       = local.metering_stream_arn
}

output "metering_spool_dir" {
  description = "Writable path of the metering spool in the container: what [metering] spool_dir must be in config_toml (null unless metering_stream.enabled)."
  value       = local.metering_enabled ? var.metering_spool_dir : null
}

output "otlp_traces_endpoint" {
  description = "What [tracing] otlp_endpoint must be in config_toml to use the collector sidecar: http://127.0.0.1:4318/v1/traces, on the task's loopback (null unless otel_collector_enabled)."
  value       = local.otel_enabled ? local.otlp_traces_endpoint : null
}
