#!/usr/bin/env bash
# Static checks of the Terraform under deploy/: every .tf file parses (python-hcl2), `terraform
# fmt -check` when a terraform binary is on PATH, and checkov finds no failed check (a skip
# needs `#checkov:skip=ID:reason` in the HCL); then, when terraform and a cellgate binary are
# at hand, the example's config template renders to configs `cellgate validate` accepts
# (check_example_config.sh). Exits non-zero on any failure.
#
#   bash deploy/check.sh
#
# The cellgate binary is CELLGATE_BIN, default target/debug/cellgate.
#
# The tools live in a virtualenv at CELLGATE_TF_VENV (default ${TMPDIR:-/tmp}/cellgate-tf-venv),
# created and filled on first use; later runs reuse it unless the pinned versions change.
set -euo pipefail

cd "$(dirname "$0")/.."

CHECKOV_VERSION=3.3.30
HCL2_VERSION=8.1.4
venv=${CELLGATE_TF_VENV:-${TMPDIR:-/tmp}/cellgate-tf-venv}
stamp="$venv/.cellgate-pins"
want="checkov==$CHECKOV_VERSION python-hcl2==$HCL2_VERSION"

if [[ ! -x $venv/bin/python || ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  echo "== installing $want into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check $want
  echo "$want" >"$stamp"
fi

echo "== python-hcl2: parse every .tf file"
find deploy -name '*.tf' -not -path '*/.terraform/*' -print0 | sort -z |
  "$venv/bin/python" -c '
import sys, hcl2
paths = [p for p in sys.stdin.read().split("\0") if p]
bad = 0
for p in paths:
    try:
        with open(p) as f:
            hcl2.load(f)
    except Exception as e:  # the parser raises several types; any of them is a failure
        bad += 1
        print(f"{p}: {e}", file=sys.stderr)
print(f"{len(paths) - bad} parsed, {bad} failed")
sys.exit(1 if bad or not paths else 0)
'

if command -v terraform >/dev/null 2>&1; then
  echo "== terraform fmt -check"
  # The binary warns about a missing CLI config on stderr; only its exit code and the file
  # names it prints on stdout matter.
  if ! terraform fmt -recursive -check deploy/terraform 2>/dev/null; then
    echo "terraform fmt: the files above need \`terraform fmt -recursive deploy/terraform\`" >&2
    exit 1
  fi
else
  echo "== terraform fmt: no terraform on PATH, skipped"
fi

echo "== checkov (terraform)"
# --skip-download: no call to the vendor's API (the network may have none); the checks
# themselves ship with the package.
"$venv/bin/checkov" -d deploy/ --framework terraform --compact --quiet --skip-download

echo "== example config: rendered and validated (cellgate validate)"
bash deploy/check_example_config.sh "${CELLGATE_BIN:-}"
