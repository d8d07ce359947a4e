# Traces ([tracing]): an AWS Distro for OpenTelemetry (ADOT) collector as a sidecar in every
# task, off unless var.otel_collector_enabled; nothing below exists otherwise.
#
#   - cellgate sends OTLP/HTTP (protobuf) only; the collector's OTLP receiver listens on
#     127.0.0.1:4318, which cellgate reaches because the containers of an awsvpc task share one
#     network namespace. Nothing outside the task can: the address is loopback, and the task's
#     security group opens no port for it;
#   - the collector's config is module-owned and passed in AOT_CONFIG_CONTENT, the environment
#     variable ADOT reads its config from (it holds no secret, so the task definition may show
#     it, and a change to it is a new revision like any other);
#   - it exports to X-Ray (awsxray: the task role gets xray:PutTraceSegments, iam.tf) and/or to
#     an OTLP/HTTP backend (otel_collector_otlphttp_endpoint). X-Ray takes cellgate's random
#     W3C trace ids because the exporter's exporter.awsxray.skiptimestampvalidation gate is on
#     by default in the pinned image; an image from before that gate went beta would drop them;
#   - the collector is not essential: if it dies the task keeps serving, ECS restarts it
#     (restartPolicy), and cellgate counts the exports that fail meanwhile
#     (cellgate_trace_exports_total{result="error"}). cellgate starts only once it is healthy,
#     so a collector that cannot start (a bad image or config) fails the deployment, which the
#     circuit breaker rolls back, rather than leaving a fleet that silently traces nothing. The
#     dependency also orders the stop: ECS stops cellgate first, so its final flush still
#     finds the collector;
#   - the config is the caller's (config_toml): its [tracing] must send to otlp_traces_endpoint
#     (the check below warns when it does not). The sample ratio is the config's too: it
#     decides the span rate, and so what the collector and X-Ray cost.

locals {
  otel_enabled         = var.otel_collector_enabled
  otlp_traces_endpoint = "http://127.0.0.1:4318/v1/traces"

  # The config's [tracing] table (local.config_tables, main.tf) and the endpoint it names.
  config_tracing       = [for t in local.config_tables : t if startswith(t, "tracing]")]
  config_otlp_endpoint = try(regex("(?m)^[ \t]*otlp_endpoint[ \t]*=[ \t]*\"([^\"]*)\"", local.config_tracing[0])[0], null)

  # The memory_limiter refuses spans above limit - spike (60% of the container's memory) and
  # forces a GC above limit (80%): the collector sheds spans before the kernel kills it.
  otel_limit_mib = floor(var.otel_collector_memory * 0.8)
  otel_spike_mib = floor(var.otel_collector_memory * 0.2)

  otel_exporters = merge(
    var.otel_collector_xray ? {
      awsxray = {
        region             = local.region
        indexed_attributes = var.otel_collector_xray_indexed_attributes
      }
    } : {},
    var.otel_collector_otlphttp_endpoint != null ? {
      otlphttp = { endpoint = var.otel_collector_otlphttp_endpoint }
    } : {},
  )

  otel_collector_config = {
    extensions = {
      # What the image's /healthcheck asks (its default address); loopback only.
      health_check = { endpoint = "127.0.0.1:13133" }
    }
    receivers = {
      otlp = { protocols = { http = { endpoint = "127.0.0.1:4318" } } }
    }
    processors = {
      memory_limiter = {
        check_interval  = "1s"
        limit_mib       = local.otel_limit_mib
        spike_limit_mib = local.otel_spike_mib
      }
      # The task's ARN, cluster and zone on every span (the ECS task metadata endpoint); what
      # cellgate set itself (service.name, ...) is kept.
      resourcedetection = { detectors = ["ecs"], override = false }
      # 50: X-Ray's PutTraceSegments takes at most 50 segments a call.
      batch = { timeout = "1s", send_batch_size = 50 }
    }
    exporters = local.otel_exporters
    service = {
      extensions = ["health_check"]
      pipelines = {
        traces = {
          receivers  = ["otlp"]
          processors = ["memory_limiter", "resourcedetection", "batch"]
          exporters  = keys(local.otel_exporters)
        }
      }
    }
  }

  otel_collector = {
    name      = "otel-collector"
    image     = var.otel_collector_image
    essential = false
    # The image's own non-root user; it writes nothing to disk with this config.
    readonlyRootFilesystem = true
    cpu                    = var.otel_collector_cpu
    memory                 = var.otel_collector_memory
    environment = [
      { name = "AOT_CONFIG_CONTENT", value = yamlencode(local.otel_collector_config) },
    ]
    # The image is FROM scratch: no shell, but a /healthcheck binary that GETs the
    # health_check extension.
    healthCheck = {
      command     = ["CMD", "/healthcheck"]
      interval    = 5
      timeout     = 3
      retries     = 3
      startPeriod = 10
    }
    restartPolicy = { enabled = true, restartAttemptPeriod = 60 }
    # After cellgate has stopped (the reverse of its dependency): time to send the last batch.
    stopTimeout      = 10
    logConfiguration = merge(local.log_configuration, { options = merge(local.log_configuration.options, { awslogs-stream-prefix = "otel-collector" }) })
  }
}

# The config is the caller's; these are the lines that make it use the sidecar.
check "config_matches_the_collector" {
  assert {
    condition     = !local.otel_enabled || local.config_otlp_endpoint == local.otlp_traces_endpoint
    error_message = "otel_collector_enabled, but config_toml's [tracing] otlp_endpoint is ${local.config_otlp_endpoint == null ? "missing" : "\"${local.config_otlp_endpoint}\""}, not \"${local.otlp_traces_endpoint}\" (the otlp_traces_endpoint output): cellgate would send the collector no span."
  }

  assert {
    condition     = local.otel_enabled || !can(regex("^https?://(127\\.|localhost[:/]|\\[::1\\])", coalesce(local.config_otlp_endpoint, "-")))
    error_message = "config_toml's [tracing] sends spans to \"${coalesce(local.config_otlp_endpoint, "-")}\", the task's loopback, but otel_collector_enabled is false: nothing listens there, and every export fails (cellgate_trace_exports_total{result=\"error\"})."
  }
}
