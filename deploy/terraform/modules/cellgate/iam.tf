data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }

    # Only tasks of this account may wear the roles (confused deputy).
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

# ---------------------------------------------------------------------------------------------
# Task role: what the proxy itself calls. Read-only on the registry table; with metering,
# writes to the usage stream.
#   GetItem       src/placement/dynamo/mod.rs read_epoch (the epoch poll) and fetch_tenant
#                 (an unknown tenant, POST /admin/tenants/{id}/invalidate)
#   BatchGetItem  src/placement/dynamo/mod.rs batch_get (change# items and the records they name)
#   Scan          src/placement/dynamo/mod.rs scan (start-up and full_refresh loads)
# No Query and no index ARN: the code queries no index and the table has none. No DynamoDB
# Streams actions: no node tails the table's stream (docs/registry.md, "Registry on DynamoDB").
# With metering_stream enabled, the metering sink's writes to the usage stream (metering.tf):
#   PutRecords       the batches of usage events, partition key = tenant (PutRecords takes the
#                    stream by name or ARN; neither needs DescribeStream* first, so no describe
#                    action is granted)
#   GenerateDataKey  Kinesis encrypts each record with the stream's KMS key using the caller's
#                    credentials; only through Kinesis and only for this stream's context
# With otel_collector_enabled and otel_collector_xray, the collector sidecar's one X-Ray call
# (otel.tf; the sidecar runs under the same task role):
#   PutTraceSegments the awsxray exporter's batches (up to 50 segments a call). X-Ray has no
#                    resource-level permissions for it, hence "*". Not granted, because nothing
#                    in the task calls them: GetSamplingRules and GetSamplingTargets (cellgate
#                    samples by [tracing] sample_ratio, and the collector runs no X-Ray
#                    receiver or proxy for SDKs to ask), PutTelemetryRecords (the exporter's
#                    telemetry option, left off)
# ---------------------------------------------------------------------------------------------

resource "aws_iam_role" "task" {
  name               = "${var.name}-task"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = local.tags
}

data "aws_iam_policy_document" "task" {
  statement {
    sid       = "ReadRegistry"
    actions   = ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Scan"]
    resources = [aws_dynamodb_table.registry.arn]
  }
}

resource "aws_iam_role_policy" "task" {
  name   = "registry-read"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.task.json
}

data "aws_iam_policy_document" "task_metering" {
  count = local.metering_enabled ? 1 : 0

  statement {
    sid       = "PutUsageEvents"
    actions   = ["kinesis:PutRecords"]
    resources = [aws_kinesis_stream.metering[0].arn]
  }

  statement {
    sid       = "EncryptUsageEvents"
    actions   = ["kms:GenerateDataKey"]
    resources = [local.kms_key_arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["kinesis.${local.region}.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "kms:EncryptionContext:aws:kinesis:arn"
      values   = [aws_kinesis_stream.metering[0].arn]
    }
  }
}

resource "aws_iam_role_policy" "task_metering" {
  count = local.metering_enabled ? 1 : 0

  name   = "usage-stream-write"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.task_metering[0].json
}

data "aws_iam_policy_document" "task_xray" {
  count = local.otel_enabled && var.otel_collector_xray ? 1 : 0

  statement {
    sid       = "PutTraceSegments"
    actions   = ["xray:PutTraceSegments"]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "task_xray" {
  count = local.otel_enabled && var.otel_collector_xray ? 1 : 0

  name   = "xray-write"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.task_xray[0].json
}

# ---------------------------------------------------------------------------------------------
# Execution role: what ECS does for the task before cellgate runs (image pull, log stream,
# secrets into the init container's environment).
# ---------------------------------------------------------------------------------------------

resource "aws_iam_role" "execution" {
  name               = "${var.name}-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = local.tags
}

data "aws_iam_policy_document" "execution" {
  # ecr:GetAuthorizationToken has no resource-level permissions: AWS requires "*".
  dynamic "statement" {
    for_each = length(local.ecr_repository_arns) == 0 ? [] : [1]
    content {
      sid       = "EcrLogin"
      actions   = ["ecr:GetAuthorizationToken"]
      resources = ["*"]
    }
  }

  dynamic "statement" {
    for_each = length(local.ecr_repository_arns) == 0 ? [] : [1]
    content {
      sid       = "PullTaskImages"
      actions   = ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"]
      resources = local.ecr_repository_arns
    }
  }

  statement {
    sid       = "WriteLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.this.arn}:*"]
  }

  statement {
    sid       = "ReadConfigParameter"
    actions   = ["ssm:GetParameters"]
    resources = [aws_ssm_parameter.config.arn]
  }

  statement {
    sid       = "DecryptConfigParameter"
    actions   = ["kms:Decrypt"]
    resources = [local.kms_key_arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["ssm.${local.region}.amazonaws.com"]
    }
  }

  dynamic "statement" {
    for_each = length(var.tls_certificates) == 0 ? [] : [1]
    content {
      sid       = "ReadTlsSecrets"
      actions   = ["secretsmanager:GetSecretValue"]
      resources = distinct(flatten([for c in var.tls_certificates : [c.cert_secret_arn, c.key_secret_arn]]))
    }
  }

  # Fleet limits: the one AUTH token secret, for cellgate's CELLGATE_REDIS_PASSWORD, and the
  # module's key through Secrets Manager only.
  dynamic "statement" {
    for_each = var.fleet_limits_enabled ? [1] : []
    content {
      sid       = "ReadFleetRedisAuthSecret"
      actions   = ["secretsmanager:GetSecretValue"]
      resources = [aws_secretsmanager_secret.fleet_redis_auth[0].arn]
    }
  }

  dynamic "statement" {
    for_each = var.fleet_limits_enabled ? [1] : []
    content {
      sid       = "DecryptFleetRedisAuthSecret"
      actions   = ["kms:Decrypt"]
      resources = [local.kms_key_arn]

      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["secretsmanager.${local.region}.amazonaws.com"]
      }
    }
  }

  dynamic "statement" {
    for_each = length(var.secrets_kms_key_arns) == 0 ? [] : [1]
    content {
      sid       = "DecryptTlsSecrets"
      actions   = ["kms:Decrypt"]
      resources = var.secrets_kms_key_arns

      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["secretsmanager.${local.region}.amazonaws.com"]
      }
    }
  }
}

resource "aws_iam_role_policy" "execution" {
  name   = "pull-logs-secrets"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}

# ---------------------------------------------------------------------------------------------
# Operator role: the CLI's writes (`cellgate registry|tenant|cell ...`, src/ops/ over
# src/placement/dynamo/write.rs Registry). Assumed by the principals in
# var.operator_principal_arns; the proxy's task role cannot write.
#   CreateTable, DescribeTable, UpdateTimeToLive   Registry::init / wait_active (`registry init`
#                 on the existing table answers ResourceInUse and "TTL already enabled", which
#                 it treats as done, but IAM is checked first, so the actions must be allowed)
#   PutItem       Registry::init seeds the epoch item; also each Put of a transaction
#   UpdateItem    the epoch bump inside each transaction (Update)
#   GetItem       Registry::get, Registry::epoch (every command reads before it writes)
#   Scan          Registry::list (`tenant list`, `cell list`, `cell weights --wave`)
#   TransactWriteItems is not an IAM action of its own: IAM checks each item's PutItem and
#   UpdateItem. No DeleteItem: nothing in the code deletes (a removed tenant is OFFBOARDED).
# ---------------------------------------------------------------------------------------------

data "aws_iam_policy_document" "operator_assume" {
  count = length(var.operator_principal_arns) == 0 ? 0 : 1

  statement {
    actions = ["sts:AssumeRole", "sts:TagSession"]

    principals {
      type        = "AWS"
      identifiers = var.operator_principal_arns
    }
  }
}

resource "aws_iam_role" "operator" {
  count = length(var.operator_principal_arns) == 0 ? 0 : 1

  name                 = "${var.name}-operator"
  assume_role_policy   = data.aws_iam_policy_document.operator_assume[0].json
  max_session_duration = var.operator_max_session_seconds
  tags                 = local.tags
}

data "aws_iam_policy_document" "operator" {
  statement {
    sid = "WriteRegistry"
    actions = [
      "dynamodb:GetItem",
      "dynamodb:Scan",
      "dynamodb:PutItem",
      "dynamodb:UpdateItem",
    ]
    resources = [aws_dynamodb_table.registry.arn]
  }

  statement {
    sid       = "InitRegistry"
    actions   = ["dynamodb:CreateTable", "dynamodb:DescribeTable", "dynamodb:UpdateTimeToLive"]
    resources = [aws_dynamodb_table.registry.arn]
  }
}

resource "aws_iam_role_policy" "operator" {
  count = length(var.operator_principal_arns) == 0 ? 0 : 1

  name   = "registry-write"
  role   = aws_iam_role.operator[0].id
  policy = data.aws_iam_policy_document.operator.json
}
