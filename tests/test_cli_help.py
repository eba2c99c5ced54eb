"""What a new user reads first: every command's --help, and the advice printed when a benchmark is offline."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import click
import pytest
import typer
from typer.testing import CliRunner

from sfpo.app.cli import app

COMMANDS = ("demo", "train", "eval", "compare")
FIXTURES = Path(__file__).parent / "fixtures" / "data"


def _flat(text: str) -> str:
    # click wraps after a hyphen ("sfpo-" / "patient"): join those before folding white space
    return " ".join(re.sub(r"-\n\s*", "-", text).split())


@pytest.mark.parametrize("name", COMMANDS)
def test_help_shows_every_default_and_all_text_and_no_value_after_flags(name):
    command = typer.main.get_command(app).commands[name]
    ctx = click.Context(command, info_name=name)
    result = CliRunner().invoke(app, [name, "--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    shown = _flat(result.output)
    for param in command.params:
        if param.name == "help":
            continue
        # every help text appears whole: nothing in [...] was taken for markup
        assert _flat(param.help or "") in shown, (name, param.name)
        if not isinstance(param, click.Option):
            continue
        names, text = param.get_help_record(ctx)
        assert _flat(names) in shown and _flat(text) in shown
        if param.is_flag:  # a flag takes no value: no placeholder after it
            assert not re.search(r"<\w+>|BOOLEAN|\bbool\b", names), (name, names)
            assert param.secondary_opts or param.default is False, (name, param.name)  # one-sided flags: off
        else:
            assert "[default:" in text or "[required]" in text, (name, param.name, text)
    assert "<bool>" not in result.output


def test_eval_offline_advice_runs_as_printed(tiny_lm, tmp_path, monkeypatch):
    """The hub is out of reach: the error advises --data-files; that advice, pasted as printed, is accepted."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    command = ["eval", "--model", tiny_lm, "--benchmarks", "gsm8k", "--n", "1", "--max-new-tokens", "4",
               "--chat", "false", "--backend", "hf", "--limit", "2"]
    first = CliRunner().invoke(app, command)
    assert first.exit_code == 2, first.output
    advice = re.search(r"`(--data-files [^`]+)`", first.output)
    assert advice, first.output
    flags = shlex.split(advice.group(1))
    path = Path(flags[1].split("=", 1)[1])  # the advice names the file it expects: put the local copy there
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(FIXTURES / "gsm8k.jsonl", path)
    second = CliRunner().invoke(app, [*command, *flags, "--out", "e"])
    assert second.exit_code == 0, second.output
    assert (tmp_path / "e" / "eval.json").is_file()


QUIET_PROBE = """
import sys, warnings
with warnings.catch_warnings(record=True) as seen:
    warnings.simplefilter("default")  # every warning shows (once per place), as for a script
    if sys.argv[1] == "quiet":
        from sfpo.app.quiet import quiet_third_party
        quiet_third_party()
    from transformers import Qwen2Config, Qwen2ForCausalLM
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=8, hidden_size=8, intermediate_size=8, num_hidden_layers=1,
                                         num_attention_heads=1, num_key_value_heads=1))
    model.is_gradient_checkpointing  # what TRL 1.16 reads on every generation
    warnings.warn("another deprecation", FutureWarning)  # anything else still shows, e.g. a recipe's own key:
    warnings.warn("`gradient_checkpointing` is deprecated and will be removed in v6.", FutureWarning)
print("WARNINGS:", [str(w.message)[:40] for w in seen])
from deepspeed.accelerator import get_accelerator
get_accelerator()
"""


@pytest.mark.parametrize("mode", ["quiet", "plain"])
def test_a_quiet_run_drops_only_the_noise(mode, tmp_path):
    """`sfpo` silences DeepSpeed's CPU notice and TRL's deprecated-property FutureWarning, nothing else."""
    import subprocess
    import sys

    pytest.importorskip("deepspeed")
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("DeepSpeed prints its CPU notice only without a GPU")
    probe = tmp_path / "probe.py"
    probe.write_text(QUIET_PROBE)
    done = subprocess.run([sys.executable, str(probe), mode], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    assert "another deprecation" in output and "'`gradient_checkpointing` is deprecated" in output
    noisy = mode == "plain"
    assert ("Setting accelerator to CPU" in output) == noisy, output
    assert ("is_gradient_checkpointing" in output) == noisy, output
