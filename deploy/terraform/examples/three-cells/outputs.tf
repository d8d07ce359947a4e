output "nlb_dns_name" {
  description = "Point the tenant names (*.<base domain>) at this NLB."
  value       = module.cellgate.nlb_dns_name
}

output "task_security_group_id" {
  description = "Allow ingress from this group on each cell's ALB security group."
  value       = module.cellgate.task_security_group_id
}

output "registry_table_name" {
  description = "For `cellgate ... --table`, or CELLGATE_REGISTRY_TABLE."
  value       = module.cellgate.registry_table_name
}

output "operator_role_arn" {
  description = "Assume this role to run the CLI's registry writes."
  value       = module.cellgate.operator_role_arn
}

output "cell_targets" {
  description = "The target URL written into the config for each cell."
  value       = local.cell_urls
}

output "config_parameter_name" {
  description = "SSM parameter with the rendered config the tasks load."
  value       = module.cellgate.config_parameter_name
}

output "fleet_redis_url" {
  description = "The [limits.fleet] redis_url written into the config (null unless fleet_limits_enabled)."
  value       = module.cellgate.fleet_redis_url
}

output "elasticache_replication_group_id" {
  description = "The fleet-limits replication group (null unless fleet_limits_enabled), for `aws elasticache`."
  value       = module.cellgate.elasticache_replication_group_id
}

output "elasticache_auth_secret_arn" {
  description = "Secret holding its AUTH token (null unless fleet_limits_enabled)."
  value       = module.cellgate.elasticache_auth_secret_arn
}

output "metering_stream_name" {
  description = "The usage-event stream named in [metering.kinesis] (null unless metering_enabled)."
  value       = module.cellgate.metering_stream_name
}

output "metering_stream_arn" {
  description = "Its ARN, for the consumer that lands the events in S3 (docs/metering-pipeline.md)."
  value       = module.cellgate.metering_stream_arn
}
