"""The README is a landing page and the docs say what the code does: the README stays short, every
`productqa ...` command line in a fenced code block of README.md or docs/*.md parses with the current
command line (parsed only: no subcommand runs), the README's relative links point to files that exist
(and to headings that exist), docs pages link only inside docs/, and mkdocs.yml's nav lists every page."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from tests.conftest import ROOT

README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
MAX_README_WORDS = 1500

FENCE = re.compile(r"^(`{3,}|~{3,})")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")  # [text](target), not images
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")
COMMAND = re.compile(r"^(?:[A-Z_][A-Z0-9_]*=\S*\s+)*productqa(?:\s|$)")  # PRODUCTQA_AUTH=x productqa ...
ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=\S*$")


def fenced_lines(path: Path):
    """(line number, line) of every line inside a fenced code block, backslash continuations joined."""
    inside, pending, start = None, "", 0
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        m = FENCE.match(line.strip())
        if m and (inside is None or line.strip().startswith(inside)):
            inside = None if inside else m.group(1)[0] * 3
            continue
        if inside is None:
            continue
        if not pending:
            start = n
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        yield start, pending + line
        pending = ""


def command_lines():
    """(file, line number, argv after `productqa`, or the shell-quoting error) for every productqa
    command in a code block."""
    found = []
    for path in [README, *PAGES]:
        for n, line in fenced_lines(path):
            text = line.strip()
            if text.startswith("$ "):
                text = text[2:].lstrip()
            if not COMMAND.match(text):
                continue
            try:
                words = shlex.split(text, comments=True)
            except ValueError as e:  # an unclosed quote
                found.append((path.relative_to(ROOT).as_posix(), n, e))
                continue
            while words and ASSIGNMENT.match(words[0]):
                words = words[1:]
            found.append((path.relative_to(ROOT).as_posix(), n, words[1:]))
    return found


COMMANDS = command_lines()


def test_readme_is_a_landing_page():
    words = len(README.read_text(encoding="utf-8").split())
    assert words <= MAX_README_WORDS, f"README.md has {words} words (at most {MAX_README_WORDS}): move depth to docs/"


def test_there_are_commands_to_check():
    files = {f for f, _, _ in COMMANDS}
    assert "README.md" in files and len(COMMANDS) >= 20, COMMANDS


def test_every_documented_command_parses():
    from ui.cli import build_parser

    parser = build_parser()
    bad = []
    for file, n, argv in COMMANDS:
        if isinstance(argv, ValueError):
            bad.append(f"{file}:{n}: {argv}")
            continue
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                parser.parse_args(argv)  # parsing only: args._main is never called
        except SystemExit as e:
            if e.code:  # --help / --version exit 0
                last = (err.getvalue().strip().splitlines() or ["?"])[-1]
                bad.append(f"{file}:{n}: productqa {shlex.join(argv)}\n    {last}")
    assert not bad, "command lines the CLI rejects:\n" + "\n".join(bad)


def github_slug(heading: str) -> str:
    """GitHub's heading id (mkdocs.yml uses the same: pymdownx.slugs.slugify, lower case)."""
    text = re.sub(r"<[^>]+>", "", heading).strip().lower()
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link's text only
    text = text.replace("`", "").replace("*", "")
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    ids, inside = set(), False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line.strip()):
            inside = not inside
        elif not inside and (m := re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)):
            ids.add(github_slug(m.group(1)))
    return ids


def relative_links(path: Path, pattern=LINK):
    """Link targets that are neither URLs nor mail addresses, outside code."""
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"^(`{3,}).*?^\1", "", text, flags=re.S | re.M)  # fenced blocks
    text = re.sub(r"`[^`\n]*`", "", text)  # code spans
    return [t for t in pattern.findall(text) if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]


def test_readme_links_point_to_files_and_headings():
    bad = []
    for target in relative_links(README):
        file, _, anchor = target.partition("#")
        dest = (ROOT / file) if file else README
        if not dest.exists():
            bad.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{target}: no heading with that id in {file or 'README.md'}")
    assert not bad, bad


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_docs_link_inside_docs(page):
    """mkdocs --strict rejects links that leave docs/: repository files are named as `code` instead."""
    bad = []
    for target in relative_links(page) + relative_links(page, IMAGE):
        file, _, anchor = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        if DOCS.resolve() not in dest.parents or not dest.exists():
            bad.append(f"{target}: outside docs/ or missing")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{target}: no heading with that id in {dest.name}")
    assert not bad, bad


def test_mkdocs_nav_lists_every_page():
    yml = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = set(re.findall(r"^\s+- [^:\n]+:\s*(\S+\.md)\s*$", yml, flags=re.M))
    assert nav == {p.name for p in PAGES}
