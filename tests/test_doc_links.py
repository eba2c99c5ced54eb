"""No file of the project cites a `docs/….md` page (or a heading in it) that the project does not ship, and
docs/algorithm.md lists every field SFPOConfig adds with its real default."""

from __future__ import annotations

import ast
import dataclasses
import os
import re
from pathlib import Path

from test_readme import _slug

ROOT = Path(__file__).resolve().parents[1]
SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".cfg"}
NAMES = {"Makefile"}
SKIP = {"benchmarks/results", "build", "dist", "runs"}  # run records keep the paths of their day; outputs
# `docs/<page>.md` or `docs/<page>.md#heading`, not part of a longer path (`../docs/<page>.md` is a relative link:
# test_readme)
CITATION = re.compile(r"(?<![\w/.-])(docs/[\w./-]*?\.md)(?:#([\w-]+))?")


def project_files(root: Path) -> list[Path]:
    """The sources, docs and configs under `root`: hidden folders (.venv, .git) and outputs left out, .ci kept."""
    found = []
    for folder, dirs, files in os.walk(root):
        rel = Path(folder).relative_to(root)
        dirs[:] = sorted(d for d in dirs if not (d.startswith(".") and d != ".ci") and not d.endswith(".egg-info")
                         and (rel / d).as_posix() not in SKIP)  # never walked into
        for name in sorted(files):
            path = Path(folder) / name
            if path.suffix in SUFFIXES or name in NAMES or (rel / name).as_posix() == ".ci/run":
                found.append(path)
    return found


def broken_citations(root: Path) -> list[str]:
    """`file:line: citation` for each cited docs page that is missing, or heading that the page lacks."""
    bad = []
    for path in project_files(root):
        for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
            for page, anchor in CITATION.findall(line):
                target = root / page
                where = f"{path.relative_to(root)}:{lineno}: {page}"
                if not target.is_file():
                    bad.append(where)
                elif anchor and anchor not in {_slug(h) for h in re.findall(r"^#+ (.+)$", target.read_text(), re.M)}:
                    bad.append(f"{where}#{anchor}")
    return bad


def test_no_file_cites_a_docs_page_or_heading_that_does_not_exist():
    assert len(project_files(ROOT)) > 50  # the walk found the project
    bad = [b for b in broken_citations(ROOT) if not b.startswith("tests/test_doc_links.py:")]  # its examples
    assert not bad, "citations of docs the project does not ship:\n" + "\n".join(bad)


def test_the_check_finds_a_missing_page_and_a_missing_heading(tmp_path):
    D = "docs"  # the missing pages are spelled apart, so that no scan of this file takes them for citations
    files = {
        "docs/algorithm.md": "# Title\n\n## The switch\n",
        "configs/a.yaml": f"# see docs/algorithm.md#the-switch and {D}/sfpo.md section 4\n",
        "src/pkg/m.py": '"""(docs/algorithm.md#the-reposition)"""\n',
        ".ci/run": f"# {D}/gone.md\n",
        "Makefile": "# docs/algorithm.md\n",
        ".venv/lib/x.py": f"# {D}/ignored.md\n",
        "benchmarks/results/old/config.yaml": f"# {D}/sfpo.md\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    assert broken_citations(tmp_path) == [
        f".ci/run:1: {D}/gone.md",
        f"configs/a.yaml:1: {D}/sfpo.md",
        "src/pkg/m.py:1: docs/algorithm.md#the-reposition",
    ]


def test_the_algorithm_page_gives_every_sfpo_field_with_its_default():
    from trl import GRPOConfig

    from sfpo import SFPOConfig

    text = (ROOT / "docs" / "algorithm.md").read_text()
    section = text.split("## Defaults and their sources", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| `([^`]+)`", section, re.M)
    documented = {name: ast.literal_eval(default) for name, default in rows}
    theirs = {f.name for f in dataclasses.fields(GRPOConfig)}
    ours = {f.name: f.default for f in dataclasses.fields(SFPOConfig) if f.name not in theirs or f.name == "num_iterations"}
    assert documented == ours


def test_no_file_cites_a_spec_section_by_number():
    # a numbered section of a spec pointed into a page users never had; cite docs/<page>.md#<heading> instead
    marker = "spec " + "§"  # split so that this file does not match itself
    bad = [f"{p.relative_to(ROOT)}:{n}" for p in project_files(ROOT)
           for n, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), start=1)
           if marker in line]
    assert not bad, "references to a spec section: " + ", ".join(bad)
