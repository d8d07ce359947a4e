terraform {
  # 1.5: `check` blocks and strcontains(); optional() object attributes need 1.3.
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 5.x: target tracking with metric math (customized_metric_specification.metrics),
      # NLB security groups, and deletion_protection_enabled on DynamoDB tables.
      version = "~> 5.0"
    }
  }
}
