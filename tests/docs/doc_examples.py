"""Collect the runnable examples of README.md and docs/*.md (docs are tests).

What is collected, from code blocks only (fenced, or indented by four spaces):
- every command whose program is ``gridq`` or ``curl`` (after ``VAR=value`` prefixes and
  an optional ``$ `` prompt), in shell-like blocks, continuation lines joined
  (a trailing ``\\`` or a quote left open);
- every ```json block (a request body, or marked as something else);
- every python block whose first line is ``# NAME.py`` and every toml block whose first
  line is ``# NAME.toml``: written as that file in the working directory, since a later
  command uses it (README's ``myjobs.py``, docs/schedules.md's ``schedules.toml``).

The marker ``<!-- not-run: REASON -->`` on the line(s) before a block exempts the whole
block; a ``# not-run: REASON`` line inside a shell block exempts the command right
after it. A marker without a reason is an error. Only the structure of the markdown is
used, never line numbers or headings, so editing a walkthrough keeps this working.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

SHELL_LANGS = {"", "sh", "bash", "shell", "console", "zsh"}
PROGRAMS = {"gridq", "curl"}
BLOCK_MARKER = re.compile(r"^\s*<!--\s*not-run:(.*?)-->\s*$")
LINE_MARKER = re.compile(r"^\s*#\s*not-run:(.*)$")
ENV_PREFIX = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
FILE_HEADER = {
    "python": re.compile(r"^#\s*([\w./-]+\.py)\s*$"),
    "toml": re.compile(r"^#\s*([\w./-]+\.toml)\s*$"),
}


@dataclass(frozen=True)
class Example:
    path: str  # relative to the repository root
    line: int  # 1-based line of the example's first line
    kind: str  # "command", "json" or "file"
    text: str
    skip: str | None = None  # the marker's reason
    name: str | None = None  # kind "file": the file name

    @property
    def id(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass
class _Block:
    lang: str
    start: int  # 1-based line of the first content line
    lines: list[str]
    marker: str | None


def _marker_reason(raw: str, where: str) -> str:
    reason = raw.strip()
    if not reason:
        raise ValueError(f"{where}: not-run marker without a reason")
    return reason


def blocks(text: str, where: str) -> list[_Block]:
    out: list[_Block] = []
    lines = text.splitlines()
    i = 0
    pending: str | None = None  # a block marker waiting for its block
    prev_blank = True
    while i < len(lines):
        line = lines[i]
        m = BLOCK_MARKER.match(line)
        if m:
            pending = _marker_reason(m.group(1), f"{where}:{i + 1}")
            i += 1
            continue
        fence = re.match(r"^(\s*)(```+|~~~+)\s*([\w+-]*)", line)
        if fence:
            indent, ticks, lang = fence.group(1), fence.group(2), fence.group(3).lower()
            body: list[str] = []
            j = i + 1
            while j < len(lines) and not lines[j].strip().startswith(ticks):
                body.append(lines[j][len(indent) :] if lines[j].startswith(indent) else lines[j])
                j += 1
            out.append(_Block(lang, i + 2, body, pending))
            pending = None
            i = j + 1
            prev_blank = False
            continue
        if prev_blank and line.startswith("    ") and line.strip():
            body = []
            j = i
            while j < len(lines) and (lines[j].startswith("    ") or not lines[j].strip()):
                body.append(lines[j][4:])
                j += 1
            while body and not body[-1].strip():
                body.pop()
            out.append(_Block("", i + 1, body, pending))
            pending = None
            i = j
            prev_blank = False
            continue
        if line.strip():
            # A marker belongs to the block right after it (blank lines allowed).
            pending = None
        prev_blank = not line.strip()
        i += 1
    return out


def _complete(cmd: str) -> bool:
    if cmd.rstrip().endswith("\\"):
        return False
    try:
        shlex.split(cmd, comments=True)
    except ValueError:  # a quote left open: the command goes on
        return False
    return True


def _program(cmd: str) -> str | None:
    try:
        words = shlex.split(cmd.replace("\\\n", " "), comments=True)
    except ValueError:
        return None
    while words and ENV_PREFIX.match(words[0]):
        words = words[1:]
    return words[0] if words else None


def commands(block: _Block, where: str) -> list[tuple[int, str, str | None]]:
    """(line, command, not-run reason) for each gridq/curl command of a shell block."""
    out = []
    skip: str | None = None
    i = 0
    lines = block.lines
    while i < len(lines):
        raw = lines[i]
        m = LINE_MARKER.match(raw)
        if m:
            skip = _marker_reason(m.group(1), f"{where}:{block.start + i}")
            i += 1
            continue
        text = raw[2:] if raw.startswith("$ ") else raw
        if not text.strip() or text.lstrip().startswith("#"):
            i += 1
            continue
        start = i
        cmd = text
        while not _complete(cmd) and i + 1 < len(lines):
            i += 1
            cmd += "\n" + lines[i]
        i += 1
        if _program(cmd) in PROGRAMS:
            out.append((block.start + start, cmd, skip))
        skip = None
    return out


def collect(root: Path) -> list[Example]:
    docs = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    out: list[Example] = []
    for doc in docs:
        rel = str(doc.relative_to(root))
        for b in blocks(doc.read_text(), rel):
            if b.lang in SHELL_LANGS:
                for line, cmd, skip in commands(b, rel):
                    out.append(Example(rel, line, "command", cmd, b.marker or skip))
            elif b.lang == "json":
                out.append(Example(rel, b.start, "json", "\n".join(b.lines), b.marker))
            elif b.lang in FILE_HEADER and b.lines and (m := FILE_HEADER[b.lang].match(b.lines[0])):
                out.append(
                    Example(rel, b.start, "file", "\n".join(b.lines) + "\n", b.marker, m.group(1))
                )
    return out
