#!/usr/bin/env bash
# Checks that every `cellgate ...` command in deploy/RUNBOOK.md's code blocks exists.
#
#   bash deploy/check_runbook.sh [BINARY] [RUNBOOK]
#
# BINARY defaults to target/debug/cellgate, RUNBOOK to deploy/RUNBOOK.md (both defaults relative
# to the repository root). A command is `cellgate` in command position inside a fenced code block:
# at the start of a line (after any VAR=value assignments), or after `|`, `;`, `&&`, `||`,
# `(`, `$(` or a backquote, or after `do`/`then`/`else`/`xargs`/`sudo`. Its command path is
# found by walking the binary's own help: a word is a subcommand only if `--help` of the path so
# far lists it, and the walk ends at the first option or at a command with no subcommands
# (the rest are its arguments). Each distinct path is then run as `BINARY PATH... --help`; a
# path that fails is named and the script exits 1. Flags are not checked, only command paths.
set -euo pipefail

# A BINARY given is taken relative to the caller's directory; the default to the repository's.
bin=${1:-}
if [[ -n $bin && $bin != /* && -e $bin ]]; then
  bin=$PWD/$bin
fi
cd "$(dirname "$0")/.."
bin=${bin:-target/debug/cellgate}
runbook=${2:-deploy/RUNBOOK.md}
[[ -x $bin ]] || { echo "check_runbook: no executable at $bin (cargo build --bin cellgate)" >&2; exit 2; }
[[ -f $runbook ]] || { echo "check_runbook: no $runbook" >&2; exit 2; }

# The words after each `cellgate` in command position, one command per line. awk keeps the
# lines inside ``` fences and drops shell comments (a `#` at the start or after a space, so
# `RUNBOOK.md#anchor` survives); grep finds the commands.
# shellcheck disable=SC2016 # the backquotes and $( in the patterns are meant literally
words=$(
  awk '/^[[:space:]]*```/ { fenced = !fenced; next } fenced' "$runbook" |
    sed -E 's/(^|[[:space:]])#.*$//' |
    grep -oE '(^|[|;&(`]|\$\(|(^|[[:space:]])(do|then|else|xargs|sudo))[[:space:]]*([A-Za-z_][A-Za-z0-9_]*=[^[:space:]]*[[:space:]]+)*cellgate([[:space:]]+[^[:space:]|;&)`]+)*' |
    sed -E 's/^[|;&(`$[:space:]]*((do|then|else|xargs|sudo)[[:space:]]+)?([A-Za-z_][A-Za-z0-9_]*=[^[:space:]]*[[:space:]]+)*cellgate//' ||
    true
)

# Subcommand names listed under "Commands:" in `BINARY PATH... --help` (clap's layout), less
# `help`. Empty for a leaf command; exit 1 if the help itself fails.
subcommands() {
  local out
  out=$("$bin" "$@" --help 2>/dev/null) || return 1
  awk '/^Commands:/ { on = 1; next } on && /^[^ ]/ { on = 0 } on && NF { print $1 }' <<<"$out" |
    grep -vx help || true
}

declare -A seen=()
paths=()
while IFS= read -r line; do
  read -ra toks <<<"$line"
  path=()
  for tok in "${toks[@]}"; do
    [[ $tok =~ ^[a-z][a-z0-9-]*$ ]] || break        # an option, a quoted or variable argument
    subs=$(subcommands "${path[@]}") || break         # the path so far is already wrong
    [[ -n $subs ]] || break                           # a leaf: the rest are its arguments
    path+=("$tok")
    grep -qx -- "$tok" <<<"$subs" || break            # not a subcommand: checked (and failed) below
  done
  key="cellgate${path[*]:+ ${path[*]}}"
  if [[ -z ${seen[$key]:-} ]]; then
    seen[$key]=1
    paths+=("$key")
  fi
done <<<"$words"

if ((${#paths[@]} == 0)); then
  echo "check_runbook: no cellgate command found in $runbook" >&2
  exit 1
fi

failed=0
for key in "${paths[@]}"; do
  read -ra path <<<"${key#cellgate}"
  if "$bin" "${path[@]}" --help >/dev/null 2>&1; then
    echo "ok    $key"
  else
    echo "FAIL  $key: \`$bin ${path[*]} --help\` failed: no such command" >&2
    failed=1
  fi
done
if ((failed)); then
  echo "check_runbook: $runbook names a command the binary does not have" >&2
  exit 1
fi
echo "check_runbook: ok (${#paths[@]} command paths in $runbook)"
