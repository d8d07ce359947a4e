terraform {
  # 1.5: `check` blocks and strcontains(); optional() object attributes need 1.3.
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 5.x: target tracking with metric math (customized_metric_specification.metrics),
      # NLB security groups, and deletion_protection_enabled on DynamoDB tables; 5.73: the
      # valkey engine on ElastiCache replication groups (cluster_mode since 5.59).
      version = ">= 5.73, < 6.0"
    }
    random = {
      source = "hashicorp/random"
      # The fleet-limits AUTH token (random_password); required even when it is off.
      version = "~> 3.5"
    }
  }
}
