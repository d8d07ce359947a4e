resource "aws_ecs_cluster" "this" {
  name = var.name

  setting {
    name  = "containerInsights"
    value = var.enable_container_insights ? "enabled" : "disabled"
  }

  tags = local.tags
}

locals {
  health_check_command = var.container_health_check_command != null ? var.container_health_check_command : [
    "CMD-SHELL",
    "curl -fsS -o /dev/null http://127.0.0.1:${var.admin_port}/healthz || wget -q -O /dev/null http://127.0.0.1:${var.admin_port}/healthz || exit 1",
  ]

  log_configuration = {
    logDriver = "awslogs"
    options = {
      awslogs-group         = aws_cloudwatch_log_group.this.name
      awslogs-region        = local.region
      awslogs-stream-prefix = "cellgate"
      mode                  = "non-blocking"
      max-buffer-size       = "8m"
    }
  }

  # What the infrastructure decides, and so what the file must not: environment beats the file.
  # The admin listener is on every interface: the NLB health-checks /readyz there, and the task
  # group decides who else may connect (network.tf).
  module_environment = {
    CELLGATE_CONFIG          = local.config_path
    CELLGATE_CONFIG_SHA256   = sha256(var.config_toml)
    CELLGATE_REGISTRY_SOURCE = "dynamodb"
    CELLGATE_REGISTRY_TABLE  = aws_dynamodb_table.registry.name
    CELLGATE_LISTEN          = "0.0.0.0:${var.container_port}"
    CELLGATE_ADMIN_LISTEN    = "0.0.0.0:${var.admin_port}"
    AWS_REGION               = local.region
  }

  # Fleet limits: the AUTH token's secret version, which cellgate ignores, makes a new token a
  # new task definition revision (a rolling deployment), as CELLGATE_CONFIG_SHA256 does a config.
  fleet_environment = {
    for k, v in {
      CELLGATE_REDIS_PASSWORD_VERSION = one(aws_secretsmanager_secret_version.fleet_redis_auth[*].version_id)
    } : k => v if var.fleet_limits_enabled
  }

  environment = [for k, v in merge(var.environment, local.module_environment, local.fleet_environment) : { name = k, value = v }]

  # Read by ECS (the execution role) at task start into cellgate's environment: the password
  # is never in the config file or in the task definition.
  cellgate_secrets = var.fleet_limits_enabled ? [
    { name = "CELLGATE_REDIS_PASSWORD", valueFrom = aws_secretsmanager_secret.fleet_redis_auth[0].arn },
  ] : null

  # Metering: the spool's volume, writable (the config writer makes it cellgate's, 0700).
  metering_mount_points = local.metering_enabled ? [
    { sourceVolume = "metering-spool", containerPath = var.metering_spool_dir, readOnly = false },
  ] : []

  config_writer = {
    name      = "config-writer"
    image     = var.config_writer_image
    essential = false
    # Root only to chown the files to cellgate's user; it exits within a second.
    user                   = "0"
    readonlyRootFilesystem = true
    entryPoint             = ["sh", "-c"]
    command                = [local.writer_script]
    secrets                = local.writer_secrets
    mountPoints            = concat([{ sourceVolume = "config", containerPath = local.config_dir, readOnly = false }], local.metering_mount_points)
    logConfiguration       = merge(local.log_configuration, { options = merge(local.log_configuration.options, { awslogs-stream-prefix = "config-writer" }) })
  }

  cellgate = {
    name                   = "cellgate"
    image                  = var.image
    essential              = true
    user                   = var.container_user
    readonlyRootFilesystem = true
    # With the collector beside it, CPU shares in proportion to the two reservations (a
    # container without one would get the smallest share under contention).
    cpu = local.otel_enabled ? var.cpu - var.otel_collector_cpu : null
    # Above server.shutdown_grace: SIGTERM starts the drain, SIGKILL would cut it short.
    stopTimeout = var.stop_timeout_seconds
    command     = ["serve", "--config", local.config_path]
    environment = local.environment
    secrets     = local.cellgate_secrets
    portMappings = [
      { containerPort = var.container_port, protocol = "tcp", name = "tls" },
      { containerPort = var.admin_port, protocol = "tcp", name = "admin" },
    ]
    mountPoints = concat([{ sourceVolume = "config", containerPath = local.config_dir, readOnly = true }], local.metering_mount_points)
    # With traces, after the collector is healthy (otel.tf): its receiver is listening.
    dependsOn = concat(
      [{ containerName = "config-writer", condition = "SUCCESS" }],
      local.otel_enabled ? [{ containerName = "otel-collector", condition = "HEALTHY" }] : [],
    )
    healthCheck = length(local.health_check_command) == 0 ? null : {
      command     = local.health_check_command
      interval    = 10
      timeout     = 3
      retries     = 3
      startPeriod = 30
    }
    linuxParameters  = { initProcessEnabled = true }
    ulimits          = [{ name = "nofile", softLimit = 65535, hardLimit = 65535 }]
    logConfiguration = local.log_configuration
  }
}

resource "aws_ecs_task_definition" "this" {
  family                   = var.name
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.cpu
  memory                   = var.memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }

  # Task-local storage shared by the two containers; gone with the task.
  volume {
    name = "config"
  }

  # Metering: the spool of usage events the stream could not take yet, on the task's
  # ephemeral storage: it lasts as long as the task (docs/metering-pipeline.md, "What can be
  # lost").
  dynamic "volume" {
    for_each = local.metering_enabled ? [1] : []
    content {
      name = "metering-spool"
    }
  }

  container_definitions = jsonencode(concat(
    [local.config_writer],
    local.otel_enabled ? [local.otel_collector] : [],
    [local.cellgate],
  ))

  tags = local.tags

  # A rotated AUTH token is a new revision (CELLGATE_REDIS_PASSWORD_VERSION); its tasks must
  # start only once the replication group accepts the new token.
  depends_on = [aws_elasticache_replication_group.fleet]

  lifecycle {
    precondition {
      condition     = !local.otel_enabled || (var.otel_collector_cpu < var.cpu && var.memory - var.otel_collector_memory >= 512)
      error_message = "otel_collector_cpu must be below cpu, and memory - otel_collector_memory at least 512 MiB: the collector's share comes out of the task's, and cellgate needs the rest."
    }

    precondition {
      condition     = !local.otel_enabled || var.otel_collector_xray || var.otel_collector_otlphttp_endpoint != null
      error_message = "otel_collector_enabled with neither otel_collector_xray nor otel_collector_otlphttp_endpoint: the collector would have nowhere to send spans."
    }
  }
}

resource "aws_ecs_service" "this" {
  name                               = var.name
  cluster                            = aws_ecs_cluster.this.id
  task_definition                    = aws_ecs_task_definition.this.arn
  desired_count                      = var.desired_count
  launch_type                        = "FARGATE"
  platform_version                   = "LATEST"
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  health_check_grace_period_seconds  = var.health_check_grace_period_seconds
  enable_ecs_managed_tags            = true
  propagate_tags                     = "SERVICE"
  wait_for_steady_state              = false

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = var.task_subnet_ids
    security_groups  = [aws_security_group.task.id]
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.tls.arn
    container_name   = "cellgate"
    container_port   = var.container_port
  }

  # Autoscaling owns the count after creation.
  lifecycle {
    ignore_changes = [desired_count]

    precondition {
      condition     = var.stop_timeout_seconds > var.shutdown_grace_seconds
      error_message = "stop_timeout_seconds must exceed shutdown_grace_seconds, or ECS kills cellgate before its drain ends."
    }

    precondition {
      condition     = var.deregistration_delay_seconds > var.shutdown_grace_seconds
      error_message = "deregistration_delay_seconds must exceed shutdown_grace_seconds (see the Draining section of deploy/README.md)."
    }

    precondition {
      condition     = var.min_capacity <= var.max_capacity && var.desired_count >= var.min_capacity && var.desired_count <= var.max_capacity
      error_message = "Need min_capacity <= desired_count <= max_capacity."
    }
  }

  depends_on = [aws_lb_listener.tls]

  tags = local.tags
}
