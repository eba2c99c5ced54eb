"""The ``sfpo`` command: ``sfpo demo | train | eval | compare``.

Each command is a thin shell over a function of the library; bad input exits with code 2 and a message
that names the option, the value given and what is allowed.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="sfpo",
    help="Slow-Fast Policy Optimization (SFPO) for RL fine-tuning of language models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def fail(message: str) -> None:
    """Print an error for the user and exit with code 2 (bad input)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


# --- commands are registered below, one section each ---------------------------------------------


if __name__ == "__main__":  # pragma: no cover
    app()
