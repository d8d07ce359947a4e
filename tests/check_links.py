#!/usr/bin/env python3
"""Checks that every relative link and anchor in the repository's Markdown resolves.

    python3 tests/check_links.py

Reads every tracked `*.md` file (`git ls-files '*.md'`) and checks each link in it: inline
links and images `[text](dest)`, reference definitions `[id]: dest`, and HTML `href`/`src`.
A link with a scheme (`http:`, `https:`, `mailto:`...) is not checked; neither is anything in
a fenced code block or an inline code span. A relative destination must be a tracked file, or
a directory holding one. An anchor (`file.md#x`, or `#x` in the same file) must exist in the
target Markdown file: a heading's slug by GitHub's rules (the heading's text lower-cased,
punctuation other than `-` and `_` removed, spaces turned into `-`; a repeated slug gets `-1`,
`-2`, ...) or an explicit `<a id="x">` / `<a name="x">`. A directory's anchor is looked up in
its README.md; anchors into other kinds of file (`main.rs#L10`) are not checked.

The `runbook_url` values of tracked YAML files (the Prometheus alert rules) are checked the
same way when they are relative; they are relative to the repository root.

Prints each broken link as `file:line: link: reason` and exits 1; otherwise prints one line.
Python 3 standard library only.
"""

import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parent.parent

SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
FENCE_RE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
# An inline code span: a run of backticks, the shortest text, the same run; never across a
# blank line (a stray backtick must not swallow the rest of the file).
CODE_SPAN_RE = re.compile(r"(?<!`)(`+)(?!`)((?:(?!\n[ \t]*\n).)+?)(?<!`)\1(?!`)", re.S)
# [text](dest "title") and ![alt](dest); the text may hold one level of brackets and span lines.
INLINE_LINK_RE = re.compile(
    r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*"
    r"(<[^<>\n]*>|[^\s()]*(?:\([^\s()]*\)[^\s()]*)*)"
    r"(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^()]*\)))?\s*\)"
)
REF_DEF_RE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^<>\n]*>|\S+)", re.M)
HTML_LINK_RE = re.compile(r"<(?:a|img)\b[^>]*?\b(?:href|src)\s*=\s*[\"']([^\"']*)[\"']", re.I)
HTML_ANCHOR_RE = re.compile(r"<a\b[^>]*?\b(?:id|name)\s*=\s*[\"']([^\"']+)[\"']", re.I)
ATX_RE = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
SETEXT_RE = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
RUNBOOK_URL_RE = re.compile(r"^\s*runbook_url:\s*[\"']?([^\"'\s]+)")


def tracked(pattern=None):
    args = ["git", "-C", str(ROOT), "ls-files", "-z"]
    if pattern:
        args.append(pattern)
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return [p for p in out.split("\0") if p]


def blank(text, start, end):
    """`text` with [start, end) replaced by spaces, newlines kept (offsets stay valid)."""
    return text[:start] + re.sub(r"[^\n]", " ", text[start:end]) + text[end:]


def strip_code(text):
    """The text with fenced blocks and inline code spans blanked out."""
    lines = text.split("\n")
    fence = None
    for i, line in enumerate(lines):
        m = FENCE_RE.match(line)
        if fence is None:
            if m:
                fence = m.group(1)
                lines[i] = ""
        else:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) \
                    and not line.strip().lstrip(fence[0]):
                fence = None
            lines[i] = ""
    text = "\n".join(lines)
    for m in reversed(list(CODE_SPAN_RE.finditer(text))):
        text = blank(text, m.start(), m.end())
    return text


def slug(heading):
    """GitHub's anchor for a heading's text (before the duplicate suffix)."""
    # Code spans keep their text as it is; outside them, links and images become their text,
    # inline HTML goes, and `_` that delimits emphasis goes (`snake_case` keeps its own).
    parts = re.split(r"(`+)(.+?)\1", heading)
    out = []
    for i in range(0, len(parts), 3):
        text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", parts[i])
        text = re.sub(r"<[^>]+>", "", text)
        text = re.sub(r"(?<![A-Za-z0-9])_+|_+(?![A-Za-z0-9])", "", text)
        out.append(text)
        if i + 2 < len(parts):
            out.append(parts[i + 2])
    text = "".join(out).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors_of(text):
    """Every anchor a Markdown text defines: heading slugs (with duplicates numbered) and ids."""
    found = set(HTML_ANCHOR_RE.findall(text))
    counts = {}
    lines = strip_code_fences_only(text).split("\n")
    prev = ""
    for line in lines:
        heading = None
        m = ATX_RE.match(line)
        if m:
            heading = m.group(2) or ""
        elif SETEXT_RE.match(line) and prev.strip() and not re.match(r"^\s*([|>#*+-]|\d+[.)])", prev):
            heading = prev.strip()
        if heading is not None:
            base = slug(heading)
            n = counts.get(base, 0)
            counts[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
            prev = ""
        else:
            prev = line
    return found


def strip_code_fences_only(text):
    """Fenced blocks blanked (a `# comment` in a shell block is not a heading)."""
    out, fence = [], None
    for line in text.split("\n"):
        m = FENCE_RE.match(line)
        if fence is None and m:
            fence = m.group(1)
            out.append("")
        elif fence is not None:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) \
                    and not line.strip().lstrip(fence[0]):
                fence = None
            out.append("")
        else:
            out.append(line)
    return "\n".join(out)


class Checker:
    def __init__(self):
        self.files = set(tracked())
        self.dirs = set()
        for f in self.files:
            parts = f.split("/")
            for i in range(1, len(parts)):
                self.dirs.add("/".join(parts[:i]))
        self.anchor_cache = {}
        self.problems = []
        self.links = 0
        self.anchors_checked = 0

    def anchors(self, rel):
        if rel not in self.anchor_cache:
            text = (ROOT / rel).read_text(encoding="utf-8")
            self.anchor_cache[rel] = anchors_of(text)
        return self.anchor_cache[rel]

    def check(self, src, line, link, base_dir):
        """Checks one destination found in `src` at `line`, relative to `base_dir`."""
        dest = link.strip()
        if dest.startswith("<") and dest.endswith(">"):
            dest = dest[1:-1]
        if not dest or SCHEME_RE.match(dest) or dest.startswith("//"):
            return
        self.links += 1
        path, _, anchor = dest.partition("#")
        path = unquote(path.split("?", 1)[0])
        if path:
            if path.startswith("/"):
                target = Path(path.lstrip("/"))
            else:
                target = Path(base_dir) / path
            rel = normalise(target)
            if rel is None:
                return self.fail(src, line, link, "points outside the repository")
            if rel not in self.files and rel not in self.dirs and rel != "":
                reason = "not tracked by git" if (ROOT / rel).exists() else "no such file or directory"
                return self.fail(src, line, link, reason)
        else:
            rel = src
        if not anchor:
            return
        if rel in self.dirs or rel == "":
            readme = f"{rel}/README.md" if rel else "README.md"
            if readme not in self.files:
                return
            rel = readme
        if not rel.lower().endswith(".md"):
            return
        self.anchors_checked += 1
        if unquote(anchor) not in self.anchors(rel):
            self.fail(src, line, link, f"no anchor #{anchor} in {rel}")

    def fail(self, src, line, link, reason):
        self.problems.append(f"{src}:{line}: {link}: {reason}")

    def markdown(self, rel):
        text = strip_code((ROOT / rel).read_text(encoding="utf-8"))
        base = str(Path(rel).parent)
        found = []
        for m in INLINE_LINK_RE.finditer(text):
            found.append((m.start(1), m.group(1)))
        for m in REF_DEF_RE.finditer(text):
            found.append((m.start(1), m.group(1)))
        for m in HTML_LINK_RE.finditer(text):
            found.append((m.start(1), m.group(1)))
        for offset, link in sorted(found):
            self.check(rel, text.count("\n", 0, offset) + 1, link, base)

    def runbook_urls(self, rel):
        text = (ROOT / rel).read_text(encoding="utf-8")
        for lineno, line in enumerate(text.split("\n"), 1):
            m = RUNBOOK_URL_RE.match(line)
            if m:
                self.check(rel, lineno, m.group(1), "")


def normalise(path):
    """A repository-relative POSIX path without `.`/`..`, or None if it leaves the root."""
    parts = []
    for p in Path(path).parts:
        if p in ("", "."):
            continue
        if p == "..":
            if not parts:
                return None
            parts.pop()
        else:
            parts.append(p)
    return "/".join(parts)


def main():
    c = Checker()
    md = sorted(f for f in c.files if f.lower().endswith(".md"))
    for rel in md:
        c.markdown(rel)
    yml = sorted(f for f in c.files if f.endswith((".yml", ".yaml")))
    for rel in yml:
        c.runbook_urls(rel)
    for p in c.problems:
        print(p)
    if c.problems:
        print(f"check_links: {len(c.problems)} broken link(s)", file=sys.stderr)
        return 1
    print(f"check_links: ok ({c.links} relative links, {c.anchors_checked} of them with an "
          f"anchor, in {len(md)} Markdown files and {len(yml)} YAML files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
