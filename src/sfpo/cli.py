"""`python -m sfpo.cli ...` (the launch lines in the README and docs/recipes.md) and the `sfpo` command's old entry
point; the command line lives in :mod:`sfpo.app.cli`."""

from sfpo.app.cli import app

__all__ = ["app"]

if __name__ == "__main__":
    app()
