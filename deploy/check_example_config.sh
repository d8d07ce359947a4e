#!/usr/bin/env bash
# Renders the example's config template (deploy/terraform/examples/three-cells/
# cellgate.toml.tftpl) the way its main.tf does, with sample values, with and without each
# optional section (fleet limits, metering, traces), and runs `cellgate validate` on each
# result: the sections the module's outputs switch on must be config cellgate accepts.
#
#   bash deploy/check_example_config.sh [BINARY]
#
# BINARY defaults to target/debug/cellgate. Needs terraform (its console renders the template;
# no provider, no init) and openssl (a throwaway certificate for the listener's files). Exits 1
# naming a rendering that fails, 0 when all pass; prints why and exits 0 when a tool is missing.
set -euo pipefail

bin=${1:-}
if [[ -n $bin && $bin != /* && -e $bin ]]; then
  bin=$PWD/$bin
fi
cd "$(dirname "$0")/.."
bin=${bin:-$PWD/target/debug/cellgate}
template=$PWD/deploy/terraform/examples/three-cells/cellgate.toml.tftpl

for tool in terraform openssl "$bin"; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "example config: no $tool, skipped"
    exit 0
  fi
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=app.example.com \
  -addext subjectAltName=DNS:app.example.com \
  -keyout "$work/app.key" -out "$work/app.pem" >/dev/null 2>&1

# What examples/three-cells/main.tf passes, with the module's outputs as variables (null: off).
cat >"$work/render.tf" <<EOF
variable "fleet_redis_url" { default = null }
variable "metering_stream" { default = null }
variable "otlp_endpoint" { default = null }
variable "trace_sample_ratio" { default = 0.01 }
locals {
  config = templatefile("$template", {
    shutdown_grace     = 30
    trusted_hops       = jsonencode(["10.0.0.0/24", "10.0.1.0/24", "10.0.2.0/24"])
    certificates       = ["app"]
    base_domains       = jsonencode(["app.example.com"])
    issuer             = jsonencode("https://idp.example.com/")
    audiences          = jsonencode(["cellgate"])
    jwks_url           = jsonencode("https://idp.example.com/.well-known/jwks.json")
    table              = jsonencode("cellgate-registry")
    cells              = { "cell-eu-1" = "https://cell-eu-1.internal.example.com", "cell-eu-2" = "https://cell-eu-2.internal.example.com" }
    waves              = { "cell-eu-1" = 1, "cell-eu-2" = null }
    tiers              = { free = { rate = 30, burst = null, concurrency = 5 }, standard = { rate = 300, burst = 600, concurrency = null } }
    fleet_redis_url    = var.fleet_redis_url
    fleet_mode         = "shadow"
    metering_stream    = var.metering_stream
    metering_spool_dir = "/var/lib/cellgate/metering"
    metering_window    = "60s"
    region             = "eu-west-1"
    otlp_endpoint      = var.otlp_endpoint
    trace_sample_ratio = var.trace_sample_ratio
  })
}
EOF

on_fleet=(-var 'fleet_redis_url=rediss://master.cellgate-fleet.abc123.euw1.cache.amazonaws.com:6379')
on_metering=(-var 'metering_stream=cellgate-usage')
on_traces=(-var 'otlp_endpoint=http://127.0.0.1:4318/v1/traces')
bad=0
n=0
check() {
  local name=$1
  shift
  n=$((n + 1))
  # The console prints a multi-line string as a heredoc: keep what is between its markers.
  if ! (cd "$work" && echo 'local.config' | terraform console -no-color "$@" 2>"$work/err") |
    sed -n '/^<<EOT$/,/^EOT$/p' | sed '1d;$d' |
    sed "s#/etc/cellgate/tls/#$work/#" >"$work/$name.toml" || [[ ! -s $work/$name.toml ]]; then
    echo "example config ($name): the template did not render:" >&2
    sed -n '/Error/,$p' "$work/err" >&2
    bad=$((bad + 1))
    return
  fi
  if ! "$bin" validate --config "$work/$name.toml" >/dev/null 2>"$work/err"; then
    echo "example config ($name): $(cat "$work/err")" >&2
    bad=$((bad + 1))
  fi
}

check plain
check traces "${on_traces[@]}"
check traces-ratio-1 "${on_traces[@]}" -var trace_sample_ratio=1
check all "${on_fleet[@]}" "${on_metering[@]}" "${on_traces[@]}"
check fleet-metering "${on_fleet[@]}" "${on_metering[@]}"
echo "$((n - bad)) rendered and valid, $bad failed"
exit $((bad > 0))
