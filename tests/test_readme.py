"""The README's quick-start block runs as written (offline, on the CPU)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def test_quickstart_block_runs(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks and "SFPOTrainer" in blocks[0]
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(blocks[0], str(README), "exec"), scope)
    trainer = scope["trainer"]
    assert trainer.sfpo_rl_step == 4 and trainer.sfpo_rollouts == 4 * 32
    assert (tmp_path / "runs" / "quickstart").is_dir()


DOCS = [README, *sorted((README.parent / "docs").glob("*.md")), README.parent / "benchmarks" / "README.md"]


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def _links(doc: Path) -> list[str]:
    text = doc.read_text()
    # [text](target) and ![alt](target), with an optional "title"
    targets = re.findall(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", text)
    targets += re.findall(r"<img[^>]+src=\"([^\"]+)\"", text)
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: str(d.relative_to(README.parent)))
def test_every_relative_link_image_and_anchor_exists(doc):
    links = _links(doc)
    assert links or doc != README, "expected relative links in the README"
    for link in links:
        path, _, anchor = link.partition("#")
        target = (doc.parent / path).resolve() if path else doc
        assert target.exists(), f"{doc.name} links to a missing file: {link}"
        if anchor and target.suffix == ".md":
            headings = re.findall(r"^#+ (.+)$", target.read_text(), flags=re.M)
            assert anchor in {_slug(h) for h in headings}, f"{doc.name}: no heading for #{anchor} in {target.name}"


def test_every_result_image_is_shown_by_the_readme_or_the_results():
    shown = {(d.parent / link.partition("#")[0]).resolve() for d in (README, README.parent / "docs" / "results.md")
             for link in _links(d)}
    unused = [p.name for p in sorted((README.parent / "docs" / "results").glob("*.png")) if p.resolve() not in shown]
    assert not unused, f"images in docs/results/ that neither the README nor docs/results.md shows: {unused}"


DEMO_TABLE = "<!-- demo-table: sfpo demo --seed 0 -->"


def _readme_demo_table() -> tuple[list[int], dict[str, list[str]]]:
    """The RL steps in the header of the README's demo table, and each arm's row (GRPO, SFPO) as cells."""
    text = README.read_text()
    assert DEMO_TABLE in text, f"the README's demo table lost its marker {DEMO_TABLE}"
    lines = [line for line in text.split(DEMO_TABLE, 1)[1].strip().splitlines()]
    table = [line for line in lines[: next(i for i, line in enumerate(lines) if not line.startswith("|"))]]
    header = [c.strip() for c in table[0].strip("|").split("|")]
    steps = [int(x) for x in re.search(r"RL step ([\d / ]+)", header[1]).group(1).split("/")]
    rows = {r.strip("|").split("|")[0].strip().split()[0]: [c.strip() for c in r.strip("|").split("|")]
            for r in table[2:]}
    return steps, rows


# The kernels PyTorch picked where the README's demo table was made (torch.backends.cpu.get_cpu_capability()).
DEMO_TABLE_CPU = "AVX512"


@pytest.mark.slow
def test_the_readme_demo_table_is_what_the_demo_prints(tmp_path):
    """`sfpo demo --seed 0` (the settings `make demo` runs) gives the README's table to the digit, on a 2-core
    x86 CPU with the versions in constraints.txt whose PyTorch kernels are those the table was made with (another
    instruction set takes another floating-point path: on an AVX2-only CPU SFPO's row differs from RL step 18 on,
    as the README says; README, *Reproducing the demo*). Minutes on 2 idle cores."""
    import io

    import torch
    from rich.console import Console

    if torch.backends.cpu.get_cpu_capability() != DEMO_TABLE_CPU:
        pytest.skip(f"the README's demo table was made with {DEMO_TABLE_CPU} kernels; this CPU uses "
                    f"{torch.backends.cpu.get_cpu_capability()}, another floating-point path")

    from sfpo.app.demo import DemoSettings, run_demo, summarize
    from sfpo.app.report import load_run

    steps, rows = _readme_demo_table()
    folder = run_demo(DemoSettings(seed=0), tmp_path / "demo", console=Console(file=io.StringIO()))
    result = summarize(folder, ("grpo", "sfpo"))
    for arm, name in (("grpo", "GRPO"), ("sfpo", "SFPO")):
        acc = {r["rl_step"]: r["eval/accuracy"] for r in load_run(folder / arm).records if "eval/accuracy" in r}
        cells = rows[name]
        assert cells[1] == " / ".join(f"{acc[s]:.1%}" for s in steps), (arm, cells[1])
        assert cells[2] == f"{max(acc.values()):.1%}", (arm, cells[2])
    assert rows["GRPO"][3] == f"{result['baseline_rollouts_to_best']:,}"
    match = result["candidate_rollouts_to_match"]
    expected = "never" if match is None else f"{match:,} ({result['rollout_ratio']:.2f}× fewer)"
    assert rows["SFPO"][3] == expected
