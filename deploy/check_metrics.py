#!/usr/bin/env python3
"""Checks that the dashboard and the alert rules only use metrics cellgate exports.

    python3 deploy/check_metrics.py [FILE...]

FILE defaults to deploy/grafana/cellgate.json and deploy/prometheus/alerts.yml. Every
`cellgate_*` name in them must be a constant in src/metrics/names.rs (`pub const X: &str =
"cellgate_..."`), as exposed: counter constants already end in `_total`, and a histogram
is read through `<name>_bucket`, `_sum` and `_count`, which are accepted only for metrics
the Metrics table of docs/metrics.md says are histograms. Exits 1 naming each unknown metric
(with file and line); 0 when everything is known. (The alerts' runbook_url anchors are checked
with every other link by tests/check_links.py.)

Python 3 standard library only (CI needs nothing installed): names are found by a regex over
the text, so the YAML is not parsed, and a metric in a comment is checked too.
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAMES_RS = ROOT / "src/metrics/names.rs"
METRICS_MD = ROOT / "docs/metrics.md"
DEFAULT_FILES = [
    ROOT / "deploy/grafana/cellgate.json",
    ROOT / "deploy/prometheus/alerts.yml",
]
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

# `pub const NAME: &str = "cellgate_x";` and the rustfmt form with the string on the next line.
CONST_RE = re.compile(r'pub const [A-Z0-9_]+: &str =\s*"(cellgate_[a-z0-9_]+)";')
# A metric name: not preceded by a character that would make it part of a longer word.
METRIC_RE = re.compile(r"(?<![A-Za-z0-9_])cellgate_[a-z0-9_]+")
# Metrics table rows: | `cellgate_x` | histogram | ... (one row may name two metrics).
TABLE_ROW_RE = re.compile(r"^\|((?:\s*`cellgate_[a-z0-9_]+`\s*/?)+)\|\s*([a-z]+)\s*\|", re.M)


def exported_names():
    names = set(CONST_RE.findall(NAMES_RS.read_text(encoding="utf-8")))
    if not names:
        sys.exit(f"check_metrics: no metric constants found in {NAMES_RS}")
    return names


def histograms(known):
    """Names docs/metrics.md documents as histograms; all non-counters if the table is unreadable."""
    found = set()
    for names, kind in TABLE_ROW_RE.findall(METRICS_MD.read_text(encoding="utf-8")):
        if kind == "histogram":
            found.update(re.findall(r"cellgate_[a-z0-9_]+", names))
    if not found:
        print(f"check_metrics: no histogram in the Metrics table of {METRICS_MD.relative_to(ROOT)}; "
              "accepting _bucket/_sum/_count on any non-counter", file=sys.stderr)
        return {n for n in known if not n.endswith("_total")}
    return found


def resolve(name, known, hists):
    """The exported metric a referenced series name belongs to, or None."""
    if name in known:
        return name
    for suffix in HISTOGRAM_SUFFIXES:
        base = name.removesuffix(suffix)
        if base != name and base in known and base in hists:
            return base
    return None


def main(argv):
    files = [Path(a) for a in argv] or DEFAULT_FILES
    known = exported_names()
    hists = histograms(known)
    problems = []
    used = set()
    for path in files:
        text = path.read_text(encoding="utf-8")
        rel = path.resolve().relative_to(ROOT) if path.resolve().is_relative_to(ROOT) else path
        for lineno, line in enumerate(text.splitlines(), 1):
            for name in METRIC_RE.findall(line):
                base = resolve(name, known, hists)
                if base is None:
                    problems.append(f"{rel}:{lineno}: unknown metric {name}")
                else:
                    used.add(base)
    for p in problems:
        print(p)
    if problems:
        print(f"check_metrics: {len(problems)} problem(s); metric names are the constants in "
              f"src/metrics/names.rs", file=sys.stderr)
        return 1
    print(f"check_metrics: ok ({len(files)} file(s), {len(used)} of {len(known)} exported "
          f"metrics used, all known)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
