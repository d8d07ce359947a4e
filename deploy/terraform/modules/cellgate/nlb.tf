# TLS decision: TCP passthrough. The NLB forwards bytes and prepends a PROXY protocol v2
# header; cellgate terminates TLS itself ([listeners.tls], certificates chosen by SNI, TLS 1.2
# and 1.3, ALPN h2/http1.1). So:
#   - cellgate sees the client's address (PROXY header, trusted only from the NLB subnets listed
#     in server.trusted_hops) for max_connections_per_ip, X-Forwarded-For and its logs;
#   - HTTP/2 reaches cellgate as HTTP/2, so its stream limits and rapid-reset defence apply
#     (a TLS listener on the NLB would also need ALPN policies per listener to keep h2);
#   - per-SNI certificates and their hot reload stay in one place, cellgate's config.
# The price: certificates are PEM files cellgate reads (from Secrets Manager via the init
# container), not ACM certificates, and the NLB cannot log TLS handshakes (it writes access logs
# for TLS listeners only).

resource "aws_lb" "this" {
  #checkov:skip=CKV_AWS_91:An NLB writes access logs only for TLS listeners; this one is TCP passthrough, so there is nothing to log. cellgate's access log (one JSON line per request, client address from the PROXY header) covers it.
  name                             = "${var.name}-nlb"
  load_balancer_type               = "network"
  internal                         = var.nlb_internal
  subnets                          = var.nlb_subnet_ids
  security_groups                  = [aws_security_group.nlb.id]
  enable_cross_zone_load_balancing = var.nlb_cross_zone
  enable_deletion_protection       = var.nlb_deletion_protection
  # PrivateLink traffic would bypass the security group rules otherwise.
  enforce_security_group_inbound_rules_on_private_link_traffic = "on"

  tags = local.tags
}

resource "aws_lb_target_group" "tls" {
  name        = "${var.name}-tls"
  port        = var.container_port
  protocol    = "TCP"
  target_type = "ip"
  vpc_id      = var.vpc_id

  proxy_protocol_v2 = true
  # Flows stay open past the deregistration delay so cellgate's own drain (after SIGTERM)
  # closes them gracefully: Connection: close, GOAWAY.
  connection_termination = false
  deregistration_delay   = var.deregistration_delay_seconds
  # The PROXY header carries the client address; the NLB's own address as the peer is what
  # server.trusted_hops expects.
  preserve_client_ip = false

  # HTTP GET /readyz on the admin port: a task takes flows once it has loaded its first
  # placement snapshot and every JWKS, not merely once it listens. It stays ready through a
  # registry outage (it serves its last snapshot), so an outage does not fail every target.
  # With proxy_protocol_v2 the NLB starts its health check connections with a PROXY v2 LOCAL
  # header too, so the config needs admin.proxy_protocol = true (checked in main.tf): the admin
  # listener reads the header from server.trusted_hops, the NLB subnets. No NLB listener
  # forwards to the admin port; the NLB reaches it for these checks only.
  health_check {
    enabled             = true
    protocol            = "HTTP"
    port                = tostring(var.admin_port)
    path                = "/readyz"
    matcher             = "200"
    interval            = var.health_check_interval_seconds
    timeout             = var.health_check_timeout_seconds
    healthy_threshold   = var.health_check_healthy_threshold
    unhealthy_threshold = var.health_check_unhealthy_threshold
  }

  lifecycle {
    precondition {
      condition     = var.health_check_timeout_seconds < var.health_check_interval_seconds
      error_message = "health_check_timeout_seconds must be below health_check_interval_seconds."
    }
  }

  tags = local.tags
}

resource "aws_lb_listener" "tls" {
  load_balancer_arn = aws_lb.this.arn
  port              = var.listener_port
  # TCP, not TLS: see the decision above. Encryption is end to end between client and cellgate.
  protocol = "TCP"

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.tls.arn
  }

  tags = local.tags
}
