#!/usr/bin/env python3
"""Checks that the dashboard and the alert rules only use metrics cellgate exports.

    python3 deploy/check_metrics.py [FILE...]

FILE defaults to deploy/grafana/cellgate.json and deploy/prometheus/alerts.yml. Every
`cellgate_*` name in them must be a constant in src/metrics/names.rs (`pub const X: &str =
"cellgate_..."`), as exposed: counter constants already end in `_total`, and a histogram
is read through `<name>_bucket`, `_sum` and `_count`, which are accepted only for metrics
the README's Metrics table says are histograms. Each alert's runbook_url anchor must also
exist in deploy/RUNBOOK.md. Exits 1 naming each unknown metric (with file and line) or
missing anchor; 0 when everything is known.

Python 3 standard library only (CI needs nothing installed): names are found by a regex over
the text, so the YAML is not parsed, and a metric in a comment is checked too.
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAMES_RS = ROOT / "src/metrics/names.rs"
README = ROOT / "README.md"
RUNBOOK = ROOT / "deploy/RUNBOOK.md"
DEFAULT_FILES = [
    ROOT / "deploy/grafana/cellgate.json",
    ROOT / "deploy/prometheus/alerts.yml",
]
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

# `pub const NAME: &str = "cellgate_x";` and the rustfmt form with the string on the next line.
CONST_RE = re.compile(r'pub const [A-Z0-9_]+: &str =\s*"(cellgate_[a-z0-9_]+)";')
# A metric name: not preceded by a character that would make it part of a longer word.
METRIC_RE = re.compile(r"(?<![A-Za-z0-9_])cellgate_[a-z0-9_]+")
# README Metrics table rows: | `cellgate_x` | histogram | ... (one row may name two metrics).
README_ROW_RE = re.compile(r"^\|((?:\s*`cellgate_[a-z0-9_]+`\s*/?)+)\|\s*([a-z]+)\s*\|", re.M)
RUNBOOK_URL_RE = re.compile(r"runbook_url:\s*\"?[^\s\"#]*RUNBOOK\.md#([A-Za-z0-9_-]+)")


def exported_names():
    names = set(CONST_RE.findall(NAMES_RS.read_text(encoding="utf-8")))
    if not names:
        sys.exit(f"check_metrics: no metric constants found in {NAMES_RS}")
    return names


def histograms(known):
    """Names the README documents as histograms; all non-counters if the table is unreadable."""
    found = set()
    for names, kind in README_ROW_RE.findall(README.read_text(encoding="utf-8")):
        if kind == "histogram":
            found.update(re.findall(r"cellgate_[a-z0-9_]+", names))
    if not found:
        print("check_metrics: no histogram in the README Metrics table; "
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


def runbook_anchors():
    """Explicit `<a id="x">` anchors and the GitHub slugs of the headings."""
    text = RUNBOOK.read_text(encoding="utf-8") if RUNBOOK.exists() else ""
    anchors = set(re.findall(r'<a (?:id|name)="([^"]+)"', text))
    for heading in re.findall(r"^#+\s+(.+?)\s*$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


def main(argv):
    files = [Path(a) for a in argv] or DEFAULT_FILES
    known = exported_names()
    hists = histograms(known)
    anchors = runbook_anchors()
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
            for anchor in RUNBOOK_URL_RE.findall(line):
                if anchor not in anchors:
                    problems.append(f"{rel}:{lineno}: runbook anchor #{anchor} not in deploy/RUNBOOK.md")
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
