# ---------------------------------------------------------------------------------------------
# Naming and placement
# ---------------------------------------------------------------------------------------------

variable "name" {
  description = "Prefix of every resource name (NLB and target group names are capped at 32 characters, hence the short limit)."
  type        = string
  default     = "cellgate"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,19}$", var.name))
    error_message = "name: 1-20 characters, lower-case letters, digits and '-', starting with a letter."
  }
}

variable "tags" {
  description = "Tags added to every resource that takes tags."
  type        = map(string)
  default     = {}
}

variable "vpc_id" {
  description = "VPC the NLB and the tasks live in."
  type        = string
}

variable "nlb_subnet_ids" {
  description = "Subnets of the NLB (public subnets for an internet-facing NLB), one per AZ. Their CIDRs are what cellgate's server.trusted_hops must list (see the nlb_subnet_cidrs output)."
  type        = list(string)

  validation {
    condition     = length(var.nlb_subnet_ids) >= 2
    error_message = "nlb_subnet_ids: at least two subnets (two AZs), or one AZ's outage takes the ingress down."
  }
}

variable "task_subnet_ids" {
  description = "Private subnets of the Fargate tasks (no public IP is assigned; they reach AWS APIs through NAT or VPC endpoints)."
  type        = list(string)

  validation {
    condition     = length(var.task_subnet_ids) >= 2
    error_message = "task_subnet_ids: at least two subnets (two AZs)."
  }
}

# ---------------------------------------------------------------------------------------------
# Load balancer
# ---------------------------------------------------------------------------------------------

variable "nlb_internal" {
  description = "true for an internal NLB (e.g. behind a CDN or a Global Accelerator), false for internet-facing."
  type        = bool
  default     = false
}

variable "nlb_ingress_cidrs" {
  description = "IPv4 CIDRs allowed to connect to the NLB listener (the NLB's security group)."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = alltrue([for c in var.nlb_ingress_cidrs : can(cidrnetmask(c))])
    error_message = "nlb_ingress_cidrs: every entry must be an IPv4 CIDR."
  }
}

variable "nlb_deletion_protection" {
  description = "Deletion protection on the NLB: the public entry point should not vanish on a stray destroy."
  type        = bool
  default     = true
}

variable "nlb_cross_zone" {
  description = "Cross-zone load balancing on the NLB. On spreads flows evenly over all tasks whatever the AZ of the NLB node (inter-AZ data transfer is charged)."
  type        = bool
  default     = true
}

variable "listener_port" {
  description = "Port the NLB listens on (TCP, TLS passed through to cellgate)."
  type        = number
  default     = 443

  validation {
    condition     = var.listener_port >= 1 && var.listener_port <= 65535
    error_message = "listener_port: 1-65535."
  }
}

variable "container_port" {
  description = "cellgate's TLS listener port in the container. Above 1023 because the container runs as a non-root user and Fargate cannot grant CAP_NET_BIND_SERVICE. Set as CELLGATE_LISTEN=0.0.0.0:<port>, which replaces the first [[listeners]] address of the config."
  type        = number
  default     = 8443

  validation {
    condition     = var.container_port >= 1024 && var.container_port <= 65535
    error_message = "container_port: 1024-65535 (the container is not root)."
  }
}

variable "admin_port" {
  description = "cellgate's admin listener port (/healthz, /readyz, /metrics, /admin/*). Set as CELLGATE_ADMIN_LISTEN=0.0.0.0:<port>, with ingress from the NLB's security group (its health checks of /readyz, which need admin.proxy_protocol = true in config_toml) and admin_ingress_security_group_ids only. No NLB listener forwards to it, and its POST paths answer loopback callers only."
  type        = number
  default     = 9090

  validation {
    condition     = var.admin_port >= 1024 && var.admin_port <= 65535
    error_message = "admin_port: 1024-65535."
  }
}

variable "admin_ingress_security_group_ids" {
  description = "Security groups (e.g. a Prometheus or CloudWatch agent) allowed to reach the admin port for /metrics. Everything they can reach there is read-only (GET /admin/* shows tenants' placement, so name scrapers only); the POST paths refuse any caller not on the task's loopback."
  type        = list(string)
  default     = []
}

variable "deregistration_delay_seconds" {
  description = "Target group deregistration delay. ECS sends SIGTERM only once the task has left the target group, so this is the time NLB nodes get to stop sending new flows before cellgate starts draining. Must exceed shutdown_grace_seconds."
  type        = number
  default     = 45

  validation {
    condition     = var.deregistration_delay_seconds >= 0 && var.deregistration_delay_seconds <= 3600
    error_message = "deregistration_delay_seconds: 0-3600."
  }
}

# ---------------------------------------------------------------------------------------------
# The task
# ---------------------------------------------------------------------------------------------

variable "image" {
  description = "cellgate container image (repository:tag or repository@digest; a digest makes deployments reproducible). An image in this account's ECR gets pull rights scoped to its repository."
  type        = string
}

variable "cpu_architecture" {
  description = "Fargate CPU architecture of the image: X86_64 or ARM64."
  type        = string
  default     = "X86_64"

  validation {
    condition     = contains(["X86_64", "ARM64"], var.cpu_architecture)
    error_message = "cpu_architecture: X86_64 or ARM64."
  }
}

variable "cpu" {
  description = "Task CPU units (1024 = one vCPU). cellgate starts one data-plane worker per core (server.workers = 0)."
  type        = number
  default     = 1024

  validation {
    condition     = contains([256, 512, 1024, 2048, 4096, 8192, 16384], var.cpu)
    error_message = "cpu: one of Fargate's sizes 256, 512, 1024, 2048, 4096, 8192, 16384."
  }
}

variable "memory" {
  description = "Task memory in MiB (must be a valid Fargate pairing with cpu)."
  type        = number
  default     = 2048
}

variable "container_user" {
  description = "uid:gid cellgate runs as (non-root). The config writer chowns the files it writes to this user."
  type        = string
  default     = "65532:65532"

  validation {
    condition     = can(regex("^[1-9][0-9]*:[1-9][0-9]*$", var.container_user))
    error_message = "container_user: numeric uid:gid, neither 0 (root)."
  }
}

variable "config_writer_image" {
  description = "Small image with a POSIX shell for the init container that writes the config and certificates to the task's shared volume before cellgate starts (any busybox or alpine image; mirror it into ECR to avoid public pull limits: an image in ECR gets pull rights scoped to its repository)."
  type        = string
  default     = "public.ecr.aws/docker/library/busybox:1.36"
}

variable "container_health_check_command" {
  description = "ECS container health check against the admin /healthz (run inside the container, so the image needs the tool it names). null: the default, curl or else wget on 127.0.0.1:<admin_port>/healthz. [] disables the container health check (e.g. a distroless image with neither)."
  type        = list(string)
  default     = null
}

variable "environment" {
  description = "Extra environment for cellgate (e.g. CELLGATE_LOG_LEVEL). CELLGATE_CONFIG, CELLGATE_REGISTRY_SOURCE, CELLGATE_REGISTRY_TABLE, CELLGATE_LISTEN, CELLGATE_ADMIN_LISTEN and AWS_REGION are set by the module and cannot be overridden here. CELLGATE_REDIS_PASSWORD is refused: with fleet_limits_enabled it comes from Secrets Manager, never as plain text in the task definition."
  type        = map(string)
  default     = {}

  validation {
    condition     = !contains(keys(var.environment), "CELLGATE_REDIS_PASSWORD")
    error_message = "environment: CELLGATE_REDIS_PASSWORD would be plain text in the task definition; fleet_limits_enabled passes it from Secrets Manager."
  }
}

variable "config_toml" {
  description = "The whole cellgate config (TOML). Stored in an SSM SecureString parameter and written to /etc/cellgate/cellgate.toml by the init container. Must have server.trusted_hops = the NLB subnets' CIDRs, proxy_protocol = true on the first [[listeners]] and admin.proxy_protocol = true (the NLB's health checks carry a PROXY header; a check warns otherwise); registry table, listen and admin addresses come from the environment. Secrets (HS256 keys) belong in Secrets Manager, not here."
  type        = string

  validation {
    condition     = length(var.config_toml) > 0 && length(var.config_toml) <= 8192
    error_message = "config_toml: 1-8192 characters (the SSM Advanced tier's limit)."
  }
}

variable "tls_certificates" {
  description = "Certificates cellgate serves by SNI: each name's PEM chain and PEM key are Secrets Manager secrets (plain-text PEM), written to /etc/cellgate/tls/<name>.pem and <name>.key at task start. Reference those paths in [[listeners.tls.certificates]]. A renewed certificate reaches running tasks on the next deployment."
  type = list(object({
    name            = string
    cert_secret_arn = string
    key_secret_arn  = string
  }))
  default = []

  validation {
    condition     = alltrue([for c in var.tls_certificates : can(regex("^[a-z0-9][a-z0-9-]{0,62}$", c.name))])
    error_message = "tls_certificates[*].name: lower-case letters, digits and '-' (it becomes a file name and an environment variable)."
  }

  validation {
    condition     = alltrue(flatten([for c in var.tls_certificates : [for a in [c.cert_secret_arn, c.key_secret_arn] : can(regex("^arn:aws[a-z-]*:secretsmanager:", a))]]))
    error_message = "tls_certificates: cert_secret_arn and key_secret_arn must be Secrets Manager ARNs."
  }
}

variable "secrets_kms_key_arns" {
  description = "Customer managed KMS keys encrypting the tls_certificates secrets (the execution role gets kms:Decrypt on them, through Secrets Manager only). Empty for secrets under the AWS managed key."
  type        = list(string)
  default     = []
}

variable "shutdown_grace_seconds" {
  description = "cellgate's server.shutdown_grace in seconds, as written in config_toml. Used to check stop_timeout_seconds and deregistration_delay_seconds."
  type        = number
  default     = 30
}

variable "stop_timeout_seconds" {
  description = "ECS stopTimeout: time between SIGTERM and SIGKILL. Above shutdown_grace_seconds so cellgate's drain ends before the kill (Fargate's maximum is 120)."
  type        = number
  default     = 45

  validation {
    condition     = var.stop_timeout_seconds >= 2 && var.stop_timeout_seconds <= 120
    error_message = "stop_timeout_seconds: 2-120 (Fargate's range)."
  }
}

variable "health_check_grace_period_seconds" {
  description = "Time after a task starts during which ECS ignores failed NLB health checks (the first registry scan and JWKS fetch)."
  type        = number
  default     = 60
}

variable "health_check_interval_seconds" {
  description = "Interval of the NLB target group's health check (HTTP GET /readyz on admin_port)."
  type        = number
  default     = 10

  validation {
    condition     = var.health_check_interval_seconds >= 5 && var.health_check_interval_seconds <= 300
    error_message = "health_check_interval_seconds: 5-300."
  }
}

variable "health_check_timeout_seconds" {
  description = "Time the NLB waits for /readyz to answer before the check fails. Below health_check_interval_seconds."
  type        = number
  default     = 5

  validation {
    condition     = var.health_check_timeout_seconds >= 2 && var.health_check_timeout_seconds <= 120
    error_message = "health_check_timeout_seconds: 2-120."
  }
}

variable "health_check_healthy_threshold" {
  description = "Consecutive 200s from /readyz before the NLB sends a task flows."
  type        = number
  default     = 2

  validation {
    condition     = var.health_check_healthy_threshold >= 2 && var.health_check_healthy_threshold <= 10
    error_message = "health_check_healthy_threshold: 2-10."
  }
}

variable "health_check_unhealthy_threshold" {
  description = "Consecutive failed checks (no answer, or not 200) before the NLB stops sending a task flows."
  type        = number
  default     = 2

  validation {
    condition     = var.health_check_unhealthy_threshold >= 2 && var.health_check_unhealthy_threshold <= 10
    error_message = "health_check_unhealthy_threshold: 2-10."
  }
}

# ---------------------------------------------------------------------------------------------
# Capacity and autoscaling
# ---------------------------------------------------------------------------------------------

variable "desired_count" {
  description = "Tasks at creation. Later changes come from autoscaling (desired_count is ignored after creation)."
  type        = number
  default     = 3
}

variable "min_capacity" {
  description = "Fewest tasks autoscaling keeps (at least one per AZ in production)."
  type        = number
  default     = 3

  validation {
    condition     = var.min_capacity >= 1
    error_message = "min_capacity: at least 1."
  }
}

variable "max_capacity" {
  description = "Most tasks autoscaling starts."
  type        = number
  default     = 30
}

variable "cpu_target_percent" {
  description = "Target of the ECSServiceAverageCPUUtilization tracking policy."
  type        = number
  default     = 60

  validation {
    condition     = var.cpu_target_percent > 10 && var.cpu_target_percent < 95
    error_message = "cpu_target_percent: between 10 and 95."
  }
}

variable "active_flows_per_task_target" {
  description = "Target of the connection tracking policy: NLB ActiveFlowCount divided by the target group's HealthyHostCount (open client connections per task). Keep well below server.max_connections (10000 by default)."
  type        = number
  default     = 3000
}

variable "requests_metric" {
  description = "Optional third tracking policy on requests per task from a custom CloudWatch metric (e.g. cellgate_requests_total scraped from /metrics by the CloudWatch agent as a per-second rate, summed over the service). metric_name/namespace/dimensions name it; target_per_task is requests per second per task."
  type = object({
    namespace       = string
    metric_name     = string
    dimensions      = map(string)
    statistic       = optional(string, "Sum")
    target_per_task = number
  })
  default = null
}

# ---------------------------------------------------------------------------------------------
# Registry table
# ---------------------------------------------------------------------------------------------

variable "registry_table_name" {
  description = "Name of the DynamoDB registry table (CELLGATE_REGISTRY_TABLE in the task)."
  type        = string
  default     = "cellgate-registry"

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]{3,255}$", var.registry_table_name))
    error_message = "registry_table_name: 3-255 characters of A-Z a-z 0-9 _ . -"
  }
}

variable "registry_stream_enabled" {
  description = "Enable a DynamoDB Stream (NEW_IMAGE, as `cellgate registry init --streams`) for other consumers. cellgate itself never reads it."
  type        = bool
  default     = false
}

variable "registry_deletion_protection" {
  description = "Deletion protection on the registry table."
  type        = bool
  default     = true
}

variable "kms_key_arn" {
  description = "Customer managed KMS key for the registry table, the log group and the config parameter (and, with fleet_limits_enabled, the ElastiCache data at rest and its AUTH token secret; with metering_stream, the usage stream). null: the module creates one (with rotation). A key passed here must allow DynamoDB, CloudWatch Logs and SSM use by this account (and ElastiCache and Secrets Manager use with fleet_limits_enabled, Kinesis use with metering_stream)."
  type        = string
  default     = null
}

variable "log_retention_days" {
  description = "CloudWatch Logs retention of cellgate's logs (access log on stdout, application log on stderr)."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days: one of CloudWatch Logs' retention values."
  }
}

variable "enable_container_insights" {
  description = "Container Insights on the ECS cluster (per-task CPU, memory, network metrics)."
  type        = bool
  default     = true
}

# ---------------------------------------------------------------------------------------------
# Operators
# ---------------------------------------------------------------------------------------------

variable "operator_principal_arns" {
  description = "IAM principals (roles, users, or account roots) allowed to assume the operator role that runs `cellgate registry|tenant|cell` writes. Empty: no operator role is created."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for a in var.operator_principal_arns : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:", a))])
    error_message = "operator_principal_arns: IAM ARNs (arn:aws:iam::<account>:...)."
  }
}

variable "operator_max_session_seconds" {
  description = "Longest operator role session."
  type        = number
  default     = 3600

  validation {
    condition     = var.operator_max_session_seconds >= 900 && var.operator_max_session_seconds <= 43200
    error_message = "operator_max_session_seconds: 900-43200."
  }
}

# ---------------------------------------------------------------------------------------------
# Egress
# ---------------------------------------------------------------------------------------------

variable "cell_security_group_ids" {
  description = "Security groups of the cells' ALBs: the tasks get egress to them on cell_ports. The cells' own security groups must allow ingress from the task_security_group_id output."
  type        = list(string)
  default     = []
}

variable "cell_cidrs" {
  description = "CIDRs of cell targets that are not reached by security group (peered VPCs, Transit Gateway): egress on cell_ports."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.cell_cidrs : can(cidrnetmask(c))])
    error_message = "cell_cidrs: every entry must be an IPv4 CIDR."
  }
}

variable "cell_ports" {
  description = "Ports the cells' targets listen on."
  type        = list(number)
  default     = [443]
}

variable "https_egress_cidrs" {
  description = "CIDRs the tasks may reach on 443 besides the cells and DynamoDB: ECR, CloudWatch Logs, SSM and Secrets Manager (Fargate pulls images and secrets through the task's ENI), the JWKS URLs of the config's issuers, Kinesis with metering_stream, and X-Ray (or an https otel_collector_otlphttp_endpoint) with otel_collector_enabled. Narrow it to interface endpoint subnets when every one of those has a VPC endpoint."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = alltrue([for c in var.https_egress_cidrs : can(cidrnetmask(c))])
    error_message = "https_egress_cidrs: every entry must be an IPv4 CIDR."
  }
}

variable "create_dynamodb_endpoint" {
  description = "Create a DynamoDB gateway endpoint on dynamodb_endpoint_route_table_ids (registry reads stay on the AWS network, no NAT charges). false if the VPC already has one: egress to DynamoDB's prefix list is allowed either way."
  type        = bool
  default     = true
}

variable "dynamodb_endpoint_route_table_ids" {
  description = "Route tables of the task subnets, for the DynamoDB gateway endpoint."
  type        = list(string)
  default     = []
}

# ---------------------------------------------------------------------------------------------
# Fleet-wide limits (ElastiCache)
# ---------------------------------------------------------------------------------------------

variable "fleet_limits_enabled" {
  description = "Create the Valkey/Redis that fleet-wide tenant limits ([limits.fleet]) reconcile through: an ElastiCache replication group (cluster mode disabled, TLS, AUTH token in Secrets Manager passed to cellgate as CELLGATE_REDIS_PASSWORD), reachable from the tasks only. config_toml must then have [limits.fleet] with redis_url = the fleet_redis_url output (a check warns otherwise). Off: nothing is created."
  type        = bool
  default     = false
}

variable "elasticache_engine" {
  description = "Engine of the fleet-limits replication group: valkey or redis (Redis OSS)."
  type        = string
  default     = "valkey"

  validation {
    condition     = contains(["valkey", "redis"], var.elasticache_engine)
    error_message = "elasticache_engine: valkey or redis."
  }
}

variable "elasticache_engine_version" {
  description = "Engine version (major.minor, e.g. 8.0 for Valkey, 7.1 for Redis OSS). null: 8.0 for valkey, 7.1 for redis. 7.0 or later (TLS is required, with an AUTH token)."
  type        = string
  default     = null

  validation {
    condition     = var.elasticache_engine_version == null || can(regex("^([7-9]|[1-9][0-9])\\.[0-9]+$", var.elasticache_engine_version))
    error_message = "elasticache_engine_version: major.minor, 7.0 or later (e.g. 8.0)."
  }
}

variable "elasticache_node_type" {
  description = "Node type of the fleet-limits replication group. Each task runs one Lua script round trip per sync_interval (20 ms: 50 per second per task) on the primary's single engine thread; burstable (t4g) nodes run out of CPU credits under that steady load, so the default is not one."
  type        = string
  default     = "cache.m7g.large"
}

variable "elasticache_num_cache_clusters" {
  description = "Nodes in the replication group: the primary plus replicas (1-6). Above 1: automatic failover and Multi-AZ, the replicas in other AZs. cellgate uses the primary only; replicas are for failover."
  type        = number
  default     = 2

  validation {
    condition     = var.elasticache_num_cache_clusters >= 1 && var.elasticache_num_cache_clusters <= 6 && floor(var.elasticache_num_cache_clusters) == var.elasticache_num_cache_clusters
    error_message = "elasticache_num_cache_clusters: 1 to 6."
  }
}

variable "elasticache_subnet_ids" {
  description = "Private subnets of the replication group's subnet group. Empty: task_subnet_ids."
  type        = list(string)
  default     = []
}

variable "elasticache_maintenance_window" {
  description = "Weekly maintenance window (UTC, ddd:hh24:mi-ddd:hh24:mi, at least 60 minutes). null: one AWS picks. A patch fails the primary over; the tasks ride it out on their local share of each limit."
  type        = string
  default     = null
}

variable "elasticache_apply_immediately" {
  description = "Apply replication group changes (node type, engine version, AUTH token) when Terraform applies them rather than in the next maintenance window. true, so that a change lands while the operator who made it is watching."
  type        = bool
  default     = true
}

# ---------------------------------------------------------------------------------------------
# Usage metering (Kinesis Data Streams)
# ---------------------------------------------------------------------------------------------

variable "metering_stream" {
  description = <<-EOT
    Usage metering ([metering], docs/metering-pipeline.md): a Kinesis data stream the tasks put
    one event per tenant per window into (PutRecords, partition key = tenant), encrypted with
    the module's KMS key, with the task role's kinesis:PutRecords on it only, and a writable
    spool volume mounted at metering_spool_dir. enabled: off by default, nothing is created.
    name: null for "<name>-usage". mode: ON_DEMAND (the default: the event rate grows with
    active tenants times tasks, divided by the window) or PROVISIONED with shard_count shards
    (each takes 1000 records or 1 MiB per second). retention_hours: 24 to 8760; 168 (7 days)
    by default, so a consumer (Firehose) down over a weekend loses nothing. config_toml must
    then have [metering.kinesis] stream = the metering_stream_name output (a check warns
    otherwise).
  EOT
  type = object({
    enabled         = optional(bool, false)
    name            = optional(string)
    mode            = optional(string, "ON_DEMAND")
    shard_count     = optional(number, 1)
    retention_hours = optional(number, 168)
  })
  default  = {}
  nullable = false

  validation {
    condition     = var.metering_stream.name == null || can(regex("^[A-Za-z0-9_.-]{1,128}$", var.metering_stream.name))
    error_message = "metering_stream.name: 1-128 characters of A-Z a-z 0-9 _ . -"
  }

  validation {
    condition     = contains(["ON_DEMAND", "PROVISIONED"], var.metering_stream.mode)
    error_message = "metering_stream.mode: ON_DEMAND or PROVISIONED."
  }

  validation {
    condition     = var.metering_stream.shard_count >= 1 && floor(var.metering_stream.shard_count) == var.metering_stream.shard_count
    error_message = "metering_stream.shard_count: a whole number, at least 1 (used with mode = PROVISIONED only)."
  }

  validation {
    condition     = var.metering_stream.retention_hours >= 24 && var.metering_stream.retention_hours <= 8760 && floor(var.metering_stream.retention_hours) == var.metering_stream.retention_hours
    error_message = "metering_stream.retention_hours: whole hours, 24 to 8760."
  }
}

variable "metering_spool_dir" {
  description = "Where cellgate's metering spool lives in the container ([metering] spool_dir must name it): with metering_stream enabled, a task-local volume is mounted there, writable by container_user only. It is on the task's ephemeral storage (20 GiB by default, shared with the image; keep the spool's bound well below): it lasts as long as the task, so it covers a sink outage, not the task's replacement while the sink is down."
  type        = string
  default     = "/var/lib/cellgate/metering"

  validation {
    condition     = can(regex("^/[A-Za-z0-9_./-]+$", var.metering_spool_dir)) && !startswith(var.metering_spool_dir, "/etc/cellgate")
    error_message = "metering_spool_dir: an absolute path (letters, digits, _ . - /), not under /etc/cellgate (the read-only config volume)."
  }
}

# ---------------------------------------------------------------------------------------------
# Traces (ADOT collector sidecar)
# ---------------------------------------------------------------------------------------------

variable "otel_collector_enabled" {
  description = "Run an AWS Distro for OpenTelemetry collector beside cellgate in each task: it takes cellgate's spans over OTLP/HTTP on the task's loopback (127.0.0.1:4318, the otlp_traces_endpoint output, which config_toml's [tracing] otlp_endpoint must name; a check warns otherwise) and exports them to X-Ray (otel_collector_xray) and/or an OTLP/HTTP backend (otel_collector_otlphttp_endpoint). Off: no container, no IAM, nothing."
  type        = bool
  default     = false
}

variable "otel_collector_image" {
  description = "ADOT collector image. Pinned: a new collector version is a reviewed change (its config keys and feature gates move between versions). Mirror it into ECR to avoid public pull limits: an image in this account's ECR gets pull rights scoped to its repository."
  type        = string
  default     = "public.ecr.aws/aws-observability/aws-otel-collector:v0.49.0"
}

variable "otel_collector_cpu" {
  description = "CPU units reserved for the collector (of the task's cpu; cellgate gets the rest as its share). CPU shares, not a cap: either may use idle CPU, and under contention they split it in this ratio."
  type        = number
  default     = 256

  validation {
    condition     = var.otel_collector_cpu >= 128 && var.otel_collector_cpu <= 4096
    error_message = "otel_collector_cpu: 128-4096 CPU units."
  }
}

variable "otel_collector_memory" {
  description = "Hard memory limit of the collector in MiB (taken from the task's memory; cellgate keeps the rest). Its memory_limiter refuses spans above 80% of it, so a slow backend costs spans, not the task's memory: cellgate counts them as failed exports."
  type        = number
  default     = 256

  validation {
    condition     = var.otel_collector_memory >= 128 && var.otel_collector_memory <= 4096
    error_message = "otel_collector_memory: 128-4096 MiB."
  }
}

variable "otel_collector_xray" {
  description = "Export the collector's spans to AWS X-Ray (awsxray exporter, in this region). The task role gets xray:PutTraceSegments, the one call the exporter makes."
  type        = bool
  default     = true
}

variable "otel_collector_xray_indexed_attributes" {
  description = "Span attributes the awsxray exporter turns into X-Ray annotations, which X-Ray indexes for filter expressions (annotation[tenant.id] = \"acme\"); every other attribute becomes unindexed metadata. Keep it to low-cardinality ids and outcomes."
  type        = list(string)
  default     = ["tenant.id", "cell.id", "cellgate.outcome", "cellgate.error_code"]
}

variable "otel_collector_otlphttp_endpoint" {
  description = "Also (or, with otel_collector_xray = false, only) export to this OTLP/HTTP base URL (the exporter appends /v1/traces), e.g. Jaeger's or Tempo's OTLP/HTTP receiver. null: none. No headers are sent, so the backend must not need an API key. The tasks' security group lets out 443 to https_egress_cidrs only: another port needs an egress rule on the task_security_group_id output."
  type        = string
  default     = null

  validation {
    condition     = var.otel_collector_otlphttp_endpoint == null || can(regex("^https?://[^/?#]+(/[^?#]*)?$", var.otel_collector_otlphttp_endpoint))
    error_message = "otel_collector_otlphttp_endpoint: an http:// or https:// URL with no query string."
  }
}
