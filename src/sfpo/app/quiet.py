"""Silence messages of other libraries that a user of the ``sfpo`` command can neither act on nor needs.

Called by the command line (``sfpo demo``, ``sfpo train``, ``sfpo eval``) only: a script that imports
``SFPOTrainer`` keeps every message the libraries print under ``GRPOTrainer``. Each filter is as narrow as
one message; anything else still shows.
"""

from __future__ import annotations

import contextlib
import logging
import warnings

_done = False


def quiet_third_party() -> None:
    """Idempotent; call before training or evaluation starts."""
    global _done
    if _done:
        return
    _done = True
    # TRL 1.16 reads `model.is_gradient_checkpointing` on every generation, and with activation checkpointing on
    # calls `gradient_checkpointing_disable/enable` around it: aliases transformers 5 deprecated, each a
    # FutureWarning. The code that would change is TRL's, not the user's. (A recipe's own deprecated
    # `gradient_checkpointing` key still warns: that one the user can fix.)
    warnings.filterwarnings(
        "ignore",
        message=r"`(is_gradient_checkpointing|gradient_checkpointing_enable|gradient_checkpointing_disable)` is deprecated",
        category=FutureWarning,
    )
    _deepspeed_cpu_notice()


def _deepspeed_cpu_notice() -> None:
    """DeepSpeed (installed with the dev extra) warns "Setting accelerator to CPU. If you have GPU or other
    accelerator, we were unable to detect it." when it is imported on a machine without a GPU, which is what every
    CPU run of TRL does. A filter on its logger (which keeps filters added before DeepSpeed configures it) drops
    that one message; DeepSpeed's choice of accelerator and all its other messages are unchanged."""
    logging.getLogger("DeepSpeed").addFilter(_not_the_cpu_notice)


def _not_the_cpu_notice(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("Setting accelerator to CPU.")


@contextlib.contextmanager
def quiet_training(enabled: bool = True):
    """While training under a front end that reports its own progress (`sfpo demo`): transformers' info messages
    and warnings about settings chosen on purpose are noise there. Errors still show. Off: nothing changes."""
    if not enabled:
        yield
        return
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            yield
        finally:
            hf_logging.set_verbosity(level)
