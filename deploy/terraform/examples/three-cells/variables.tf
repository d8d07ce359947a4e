variable "region" {
  description = "AWS region of the proxy, the registry table and (normally) the cells."
  type        = string
}

variable "vpc_id" {
  description = "VPC for the NLB and the tasks (it must reach the cells' ALBs: same VPC, peering or Transit Gateway)."
  type        = string
}

variable "public_subnet_ids" {
  description = "Public subnets of the internet-facing NLB, one per AZ."
  type        = list(string)
}

variable "private_subnet_ids" {
  description = "Private subnets of the tasks."
  type        = list(string)
}

variable "private_route_table_ids" {
  description = "Route tables of the private subnets, for the DynamoDB gateway endpoint. Empty: no endpoint is created (the VPC has one already)."
  type        = list(string)
  default     = []
}

variable "image" {
  description = "cellgate image, e.g. <account>.dkr.ecr.<region>.amazonaws.com/cellgate@sha256:..."
  type        = string
}

variable "cells" {
  description = <<-EOT
    The cells, by id. This example creates nothing for them: it takes each one's ALB and writes
    it into cellgate's config as a [[cells]] entry. alb_dns_name is the ALB's DNS name; with
    scheme = "https" (the default) cellgate verifies the ALB's certificate against the host it
    connects to, and no certificate covers *.elb.amazonaws.com, so give host: a name the ALB's
    certificate covers that resolves to the ALB (e.g. a Route 53 alias). security_group_id is the
    ALB's security group (tasks get egress to it; the cell must allow ingress from the
    task_security_group_id output). wave: the cell's canary wave.
  EOT
  type = map(object({
    alb_dns_name      = string
    host              = optional(string)
    scheme            = optional(string, "https")
    security_group_id = optional(string)
    wave              = optional(number)
  }))

  validation {
    condition     = length(var.cells) == 3
    error_message = "cells: this example wires exactly three cells."
  }

  validation {
    condition     = alltrue([for id, c in var.cells : can(regex("^[a-z0-9][a-z0-9-]{0,62}$", id))])
    error_message = "cells: ids are lower-case letters, digits and '-'."
  }

  validation {
    condition     = alltrue([for c in var.cells : c.scheme == "http" || (c.scheme == "https" && c.host != null)])
    error_message = "cells: scheme is http or https, and https needs host (a name the ALB's certificate covers)."
  }
}

variable "base_domains" {
  description = "Tenant subdomain bases: {tenant}.<base> names the tenant."
  type        = list(string)
}

variable "jwt_issuer" {
  description = "The identity provider: its exact iss, the audiences accepted, and its JWKS URL."
  type = object({
    issuer    = string
    audiences = list(string)
    jwks_url  = string
  })
}

variable "tls_certificates" {
  description = "Certificates cellgate serves by SNI (the first is the default): PEM chain and PEM key in Secrets Manager. See the module's variable of the same name."
  type = list(object({
    name            = string
    cert_secret_arn = string
    key_secret_arn  = string
  }))

  validation {
    condition     = length(var.tls_certificates) >= 1
    error_message = "tls_certificates: at least one; cellgate terminates TLS (TCP passthrough on the NLB)."
  }
}

variable "operator_principal_arns" {
  description = "Who may assume the operator role for `cellgate tenant|cell|registry` writes."
  type        = list(string)
  default     = []
}

variable "limit_tiers" {
  description = <<-EOT
    Tenant limit tiers, rendered as [limits.tiers.<name>] (tenant records name their tier): rate
    in requests per second, burst, concurrency, each optional. Without fleet limits every figure
    is per proxy task (with N tasks, a fleet-wide 300 req/s is rate = 300 / N); with
    fleet_limits_enabled, rate and burst are fleet-wide figures. Empty: no tenant limits, as
    before. When not empty it must define "standard" (the tier of records naming an unknown one).
  EOT
  type = map(object({
    rate        = optional(number)
    burst       = optional(number)
    concurrency = optional(number)
  }))
  default = {}

  validation {
    condition     = length(var.limit_tiers) == 0 || contains(keys(var.limit_tiers), "standard")
    error_message = "limit_tiers: define a \"standard\" tier (cellgate's default_tier)."
  }

  validation {
    condition     = alltrue([for name in keys(var.limit_tiers) : can(regex("^[a-z][a-z0-9_-]{0,31}$", name))])
    error_message = "limit_tiers: names are lower-case letters, digits, '_' and '-'."
  }
}

variable "fleet_limits_enabled" {
  description = "Fleet-wide tenant limits: the module creates an ElastiCache Valkey (TLS, AUTH token in Secrets Manager) and the config gets a [limits.fleet] section pointing at it, so limit_tiers' rate and burst hold for the whole fleet rather than per task. Off by default; see deploy/RUNBOOK.md, \"Fleet limits\", before turning it on."
  type        = bool
  default     = false
}

variable "fleet_limits_mode" {
  description = "[limits.fleet] mode: \"shadow\" counts what the fleet-wide limits would refuse and refuses nothing beyond each task's share (rate / tasks); \"enforce\" refuses. Start with shadow."
  type        = string
  default     = "shadow"

  validation {
    condition     = contains(["shadow", "enforce"], var.fleet_limits_mode)
    error_message = "fleet_limits_mode: \"shadow\" or \"enforce\"."
  }
}

variable "metering_enabled" {
  description = "Usage metering: the module creates a Kinesis stream (on demand, KMS, 7 days) and the config gets [metering] with [metering.kinesis] pointing at it: one event per tenant per window per task, for billing (docs/metering-pipeline.md). On by default in this example."
  type        = bool
  default     = true
}

variable "metering_window" {
  description = "[metering] window: how much time one usage event covers (\"60s\", \"5m\"). Each task emits one event per active tenant per window, so a longer window means fewer, larger events."
  type        = string
  default     = "60s"

  validation {
    condition     = can(regex("^[1-9][0-9]*(s|m)$", var.metering_window))
    error_message = "metering_window: a whole number of seconds or minutes, e.g. \"60s\" or \"5m\"."
  }
}

variable "traces_enabled" {
  description = "Traces: the module runs an ADOT collector sidecar in each task that exports to X-Ray, and the config gets a [tracing] section sending spans to it (deploy/README.md, \"Traces\"). Off by default."
  type        = bool
  default     = false
}

variable "trace_sample_ratio" {
  description = "[tracing] sample_ratio: the fraction of requests traced (new traces; decided on arrival). X-Ray bills per trace recorded, and a trace here is one request: at 5,000 requests per second, 0.01 is 50 traces a second, about 130 million a month. Start at 0.01-0.05 on a busy fleet; 1.0 only on a quiet one."
  type        = number
  default     = 0.01

  validation {
    condition     = var.trace_sample_ratio >= 0 && var.trace_sample_ratio <= 1
    error_message = "trace_sample_ratio: between 0 and 1."
  }
}
