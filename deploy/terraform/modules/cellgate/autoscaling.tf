# Target tracking on every signal: the service scales out when any one is above its target and
# in only when all are below theirs.
#   1. CPU (ECSServiceAverageCPUUtilization): TLS handshakes, JWT checks and header work are CPU.
#   2. Open connections per task: an NLB has no request count (it sees flows, not requests), so
#      ActiveFlowCount / HealthyHostCount of the target group stands in for load that costs
#      memory and file descriptors even when idle (keep-alive, HTTP/2, slow clients), and that
#      CPU alone would miss. NewFlowCount was not chosen: with keep-alive and h2 a handful of
#      connections can carry any request rate, so new connections say little about load.
#   3. Optional requests per task, from cellgate's own cellgate_requests_total exported to
#      CloudWatch (var.requests_metric): the true request count, when a collector ships it.

resource "aws_appautoscaling_target" "this" {
  service_namespace  = "ecs"
  resource_id        = "service/${aws_ecs_cluster.this.name}/${aws_ecs_service.this.name}"
  scalable_dimension = "ecs:service:DesiredCount"
  min_capacity       = var.min_capacity
  max_capacity       = var.max_capacity
}

resource "aws_appautoscaling_policy" "cpu" {
  name               = "${var.name}-cpu"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.this.service_namespace
  resource_id        = aws_appautoscaling_target.this.resource_id
  scalable_dimension = aws_appautoscaling_target.this.scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value       = var.cpu_target_percent
    scale_out_cooldown = 60
    # Slow to scale in: removing a task drains its connections onto the others.
    scale_in_cooldown = 300

    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageCPUUtilization"
    }
  }
}

resource "aws_appautoscaling_policy" "flows" {
  name               = "${var.name}-active-flows-per-task"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.this.service_namespace
  resource_id        = aws_appautoscaling_target.this.resource_id
  scalable_dimension = aws_appautoscaling_target.this.scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value       = var.active_flows_per_task_target
    scale_out_cooldown = 60
    scale_in_cooldown  = 300

    customized_metric_specification {
      metrics {
        id          = "flows"
        label       = "NLB active flows to cellgate"
        return_data = false

        metric_stat {
          stat = "Average"

          metric {
            namespace   = "AWS/NetworkELB"
            metric_name = "ActiveFlowCount"

            dimensions {
              name  = "LoadBalancer"
              value = aws_lb.this.arn_suffix
            }

            dimensions {
              name  = "TargetGroup"
              value = aws_lb_target_group.tls.arn_suffix
            }
          }
        }
      }

      metrics {
        id          = "healthy"
        label       = "healthy cellgate tasks"
        return_data = false

        metric_stat {
          stat = "Average"

          metric {
            namespace   = "AWS/NetworkELB"
            metric_name = "HealthyHostCount"

            dimensions {
              name  = "LoadBalancer"
              value = aws_lb.this.arn_suffix
            }

            dimensions {
              name  = "TargetGroup"
              value = aws_lb_target_group.tls.arn_suffix
            }
          }
        }
      }

      # At least one task in the denominator: with none healthy the ratio would be undefined
      # just when scaling out matters most.
      metrics {
        id          = "flows_per_task"
        label       = "active flows per healthy task"
        expression  = "flows / IF(healthy >= 1, healthy, 1)"
        return_data = true
      }
    }
  }
}

resource "aws_appautoscaling_policy" "requests" {
  count = var.requests_metric == null ? 0 : 1

  name               = "${var.name}-requests-per-task"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.this.service_namespace
  resource_id        = aws_appautoscaling_target.this.resource_id
  scalable_dimension = aws_appautoscaling_target.this.scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value       = var.requests_metric.target_per_task
    scale_out_cooldown = 60
    scale_in_cooldown  = 300

    customized_metric_specification {
      metrics {
        id          = "requests"
        label       = "cellgate requests"
        return_data = false

        metric_stat {
          stat = var.requests_metric.statistic

          metric {
            namespace   = var.requests_metric.namespace
            metric_name = var.requests_metric.metric_name

            dynamic "dimensions" {
              for_each = var.requests_metric.dimensions
              content {
                name  = dimensions.key
                value = dimensions.value
              }
            }
          }
        }
      }

      metrics {
        id          = "healthy"
        label       = "healthy cellgate tasks"
        return_data = false

        metric_stat {
          stat = "Average"

          metric {
            namespace   = "AWS/NetworkELB"
            metric_name = "HealthyHostCount"

            dimensions {
              name  = "LoadBalancer"
              value = aws_lb.this.arn_suffix
            }

            dimensions {
              name  = "TargetGroup"
              value = aws_lb_target_group.tls.arn_suffix
            }
          }
        }
      }

      metrics {
        id          = "requests_per_task"
        label       = "requests per healthy task"
        expression  = "requests / IF(healthy >= 1, healthy, 1)"
        return_data = true
      }
    }
  }
}
