# Rules are separate resources (not inline blocks) so that other stacks, e.g. a cell's, can add
# their own to these groups without Terraform removing them.

resource "aws_security_group" "nlb" {
  name        = "${var.name}-nlb"
  description = "cellgate NLB: clients in, tasks out"
  vpc_id      = var.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-nlb" })
}

resource "aws_vpc_security_group_ingress_rule" "nlb_clients" {
  for_each = toset(var.nlb_ingress_cidrs)

  security_group_id = aws_security_group.nlb.id
  description       = "clients to the TLS listener"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = var.listener_port
  to_port           = var.listener_port
}

resource "aws_vpc_security_group_egress_rule" "nlb_to_tasks" {
  security_group_id            = aws_security_group.nlb.id
  description                  = "flows to cellgate's TLS listener"
  referenced_security_group_id = aws_security_group.task.id
  ip_protocol                  = "tcp"
  from_port                    = var.container_port
  to_port                      = var.container_port
}

resource "aws_vpc_security_group_egress_rule" "nlb_health_checks" {
  security_group_id            = aws_security_group.nlb.id
  description                  = "health checks (GET /readyz) to cellgate's admin listener"
  referenced_security_group_id = aws_security_group.task.id
  ip_protocol                  = "tcp"
  from_port                    = var.admin_port
  to_port                      = var.admin_port
}

resource "aws_security_group" "task" {
  name        = "${var.name}-task"
  description = "cellgate tasks: from the NLB, to the cells, DynamoDB and AWS APIs"
  vpc_id      = var.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-task" })
}

# Only the NLB reaches the listener: it is the one hop whose PROXY header cellgate trusts.
resource "aws_vpc_security_group_ingress_rule" "task_from_nlb" {
  security_group_id            = aws_security_group.task.id
  description                  = "NLB flows"
  referenced_security_group_id = aws_security_group.nlb.id
  ip_protocol                  = "tcp"
  from_port                    = var.container_port
  to_port                      = var.container_port
}

# The NLB's health checks of /readyz. No NLB listener forwards clients to this port, and the
# admin POST paths answer loopback callers only (a PROXY header cannot make one local).
resource "aws_vpc_security_group_ingress_rule" "task_health_checks" {
  security_group_id            = aws_security_group.task.id
  description                  = "NLB health checks of the admin port"
  referenced_security_group_id = aws_security_group.nlb.id
  ip_protocol                  = "tcp"
  from_port                    = var.admin_port
  to_port                      = var.admin_port
}

# Besides the NLB's health checks, the admin port (/metrics, /admin/*) is open to the
# scrapers named here only.
resource "aws_vpc_security_group_ingress_rule" "task_admin" {
  for_each = toset(var.admin_ingress_security_group_ids)

  security_group_id            = aws_security_group.task.id
  description                  = "metrics scrape of the admin port"
  referenced_security_group_id = each.value
  ip_protocol                  = "tcp"
  from_port                    = var.admin_port
  to_port                      = var.admin_port
}

locals {
  cell_sg_rules   = { for p in setproduct(var.cell_security_group_ids, var.cell_ports) : "${p[0]}:${p[1]}" => { sg = p[0], port = p[1] } }
  cell_cidr_rules = { for p in setproduct(var.cell_cidrs, var.cell_ports) : "${p[0]}:${p[1]}" => { cidr = p[0], port = p[1] } }
}

resource "aws_vpc_security_group_egress_rule" "task_to_cell_sg" {
  for_each = local.cell_sg_rules

  security_group_id            = aws_security_group.task.id
  description                  = "to a cell's ALB"
  referenced_security_group_id = each.value.sg
  ip_protocol                  = "tcp"
  from_port                    = each.value.port
  to_port                      = each.value.port
}

resource "aws_vpc_security_group_egress_rule" "task_to_cell_cidr" {
  for_each = local.cell_cidr_rules

  security_group_id = aws_security_group.task.id
  description       = "to a cell's targets by CIDR"
  cidr_ipv4         = each.value.cidr
  ip_protocol       = "tcp"
  from_port         = each.value.port
  to_port           = each.value.port
}

resource "aws_vpc_security_group_egress_rule" "task_to_dynamodb" {
  security_group_id = aws_security_group.task.id
  description       = "DynamoDB (registry) through its gateway endpoint"
  prefix_list_id    = data.aws_ec2_managed_prefix_list.dynamodb.id
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_egress_rule" "task_https" {
  for_each = toset(var.https_egress_cidrs)

  security_group_id = aws_security_group.task.id
  description       = "ECR, CloudWatch Logs, SSM, Secrets Manager, JWKS"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

# Registry reads stay inside AWS's network and skip the NAT gateway's per-GB charge. The
# endpoint policy is left open: a gateway endpoint serves the whole route table, and other
# workloads of the VPC may use other tables; the IAM roles above do the scoping.
resource "aws_vpc_endpoint" "dynamodb" {
  count = var.create_dynamodb_endpoint ? 1 : 0

  vpc_id            = var.vpc_id
  service_name      = "com.amazonaws.${local.region}.dynamodb"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = var.dynamodb_endpoint_route_table_ids
  tags              = merge(local.tags, { Name = "${var.name}-dynamodb" })

  lifecycle {
    precondition {
      condition     = length(var.dynamodb_endpoint_route_table_ids) > 0
      error_message = "create_dynamodb_endpoint needs dynamodb_endpoint_route_table_ids (the task subnets' route tables)."
    }
  }
}
