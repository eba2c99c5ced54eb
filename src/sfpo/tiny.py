"""Public names of the tiny-policy builder (kept stable across the package's layout); the code lives in
:mod:`sfpo.toy.tiny`."""

from sfpo.toy.tiny import *  # noqa: F403
from sfpo.toy.tiny import __all__  # noqa: F401
