# Usage metering ([metering], issue 21): every task emits one JSON event per tenant per window
# (one per tenant, cell and window part, with an idempotency key) and puts them into a Kinesis
# data stream with PutRecords, the tenant as partition key. Off unless
# var.metering_stream.enabled; nothing below exists otherwise.
#
#   - encrypted at rest with the module's KMS key (or var.kms_key_arn): Kinesis calls KMS with
#     the caller's credentials, so the producers (the task role) need kms:GenerateDataKey on
#     the key, scoped below to Kinesis and to this stream's encryption context, and consumers
#     need kms:Decrypt the same way (docs/metering-pipeline.md);
#   - the task role gets kinesis:PutRecords on this stream and nothing else (iam.tf);
#   - while the stream refuses, cellgate keeps the windows in a bounded spool on disk and
#     replays them in order: metering_spool_dir, a task-local volume (ecs.tf, config.tf);
#   - the config is the caller's (config_toml): it must name this stream in [metering.kinesis]
#     (the check below warns when it does not). The event count per second is about active
#     tenants times tasks divided by the window, hence on-demand capacity by default.
#
# Landing the events in S3 for Athena (Firehose from this stream, a Glue table) is described in
# docs/metering-pipeline.md rather than built here.

locals {
  metering_enabled     = var.metering_stream.enabled
  metering_stream_name = coalesce(var.metering_stream.name, "${var.name}-usage")
  metering_provisioned = var.metering_stream.mode == "PROVISIONED"

  metering_stream_arn = one(aws_kinesis_stream.metering[*].arn)
}

resource "aws_kinesis_stream" "metering" {
  count = local.metering_enabled ? 1 : 0

  name             = local.metering_stream_name
  shard_count      = local.metering_provisioned ? var.metering_stream.shard_count : null
  retention_period = var.metering_stream.retention_hours

  encryption_type = "KMS"
  kms_key_id      = local.kms_key_arn

  stream_mode_details {
    stream_mode = var.metering_stream.mode
  }

  tags = local.tags
}

check "config_matches_the_metering_stream" {
  assert {
    condition     = !local.metering_enabled || (strcontains(var.config_toml, "[metering.kinesis]") && strcontains(var.config_toml, "\"${local.metering_stream_name}\""))
    error_message = "metering_stream is enabled, but config_toml has no [metering.kinesis] with stream = \"${local.metering_stream_name}\" (the metering_stream_name output): the tasks would not put their usage events into it."
  }

  assert {
    condition     = !local.metering_enabled || strcontains(var.config_toml, var.metering_spool_dir)
    error_message = "metering_stream is enabled, but config_toml's [metering] does not name spool_dir = \"${var.metering_spool_dir}\" (metering_spool_dir), the only writable path in the task: the spool would fail on the read-only root filesystem."
  }

  assert {
    condition     = local.metering_enabled || !strcontains(var.config_toml, "[metering.kinesis]")
    error_message = "config_toml has a [metering.kinesis] section but metering_stream is not enabled: the module creates no stream, grants the task role no kinesis:PutRecords and mounts no spool volume."
  }
}
