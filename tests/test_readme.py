"""The README's quick-start block runs as written (offline, on the CPU)."""

from __future__ import annotations

import re
from pathlib import Path

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


def test_every_relative_link_and_image_exists_and_every_result_image_is_shown():
    text = README.read_text()
    # [text](target) and ![alt](target), with an optional "title"
    targets = re.findall(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", text)
    targets += re.findall(r"<img[^>]+src=\"([^\"]+)\"", text)
    relative = [t.split("#")[0] for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:|#", t)]
    assert relative, "expected relative links in the README"
    missing = [t for t in relative if not (README.parent / t).exists()]
    assert not missing, f"README links to missing files: {missing}"
    shown = {(README.parent / t).resolve() for t in relative}
    unused = [
        p.name for p in sorted((README.parent / "docs" / "results").glob("*.png")) if p.resolve() not in shown
    ]
    assert not unused, f"images in docs/results/ the README does not show: {unused}"
