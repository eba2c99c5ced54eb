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
