# How the config reaches the task. cellgate reads one TOML file (CELLGATE_CONFIG) and its TLS
# files from disk, and the root filesystem is read-only, so:
#   1. the config lives in an SSM SecureString parameter (versioned, encrypted with the CMK,
#      readable only by the execution role);
#   2. a short-lived, non-essential init container gets it, and each certificate and key from
#      Secrets Manager, as secrets in its environment, writes them to a task-local volume and
#      exits;
#   3. cellgate starts once that container has exited 0, with the volume mounted read-only.
# With metering, a second task-local volume holds the spool (metering_spool_dir), mounted
# writable in both containers; the init container hands it to cellgate's user.
# Environment variables carry what the infrastructure decides (ports, table, region), since
# they override the file. A config change rolls the service: the config's digest is in
# cellgate's environment (CELLGATE_CONFIG_SHA256, unread by cellgate), so a new config is a new
# task definition revision. A renewed certificate is not seen by Terraform: roll the service
# (`aws ecs update-service --force-new-deployment`) after rotating a secret.

resource "aws_ssm_parameter" "config" {
  name        = "/${var.name}/config.toml"
  description = "cellgate config, written to ${local.config_path} at task start"
  type        = "SecureString"
  key_id      = local.kms_key_arn
  tier        = length(var.config_toml) > 4096 ? "Advanced" : "Standard"
  value       = var.config_toml
  tags        = local.tags
}

resource "aws_cloudwatch_log_group" "this" {
  name              = "/ecs/${var.name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = local.kms_key_arn
  tags              = local.tags
}

locals {
  # Every file is written beside its final name and renamed over it, the way cellgate's TLS
  # reload expects, and readable only by cellgate's user.
  writer_script = join("\n", concat(
    [
      "set -eu",
      "umask 077",
      "mkdir -p ${local.config_dir}/tls",
      "printf '%s\\n' \"$CELLGATE_CONFIG_TOML\" > ${local.config_path}.new && mv ${local.config_path}.new ${local.config_path}",
    ],
    flatten([for i, c in var.tls_certificates : [
      "printf '%s\\n' \"$TLS_CERT_${i}\" > ${local.config_dir}/tls/${c.name}.pem",
      "printf '%s\\n' \"$TLS_KEY_${i}\" > ${local.config_dir}/tls/${c.name}.key",
    ]]),
    ["chown -R ${var.container_user} ${local.config_dir}"],
    # The metering spool's volume starts out root's: make it cellgate's alone.
    local.metering_enabled ? [
      "chown ${var.container_user} ${var.metering_spool_dir}",
      "chmod 700 ${var.metering_spool_dir}",
    ] : [],
  ))

  writer_secrets = concat(
    [{ name = "CELLGATE_CONFIG_TOML", valueFrom = aws_ssm_parameter.config.arn }],
    flatten([for i, c in var.tls_certificates : [
      { name = "TLS_CERT_${i}", valueFrom = c.cert_secret_arn },
      { name = "TLS_KEY_${i}", valueFrom = c.key_secret_arn },
    ]]),
  )
}
