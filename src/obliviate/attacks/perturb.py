"""Deprecated location of :mod:`obliviate.perturb` (moved below metrics and attacks, which both
use it). Importing this module warns; it will be removed in the release after 0.2."""

import warnings

from obliviate.perturb import *  # noqa: F403
from obliviate.perturb import __all__  # noqa: F401

warnings.warn(
    "obliviate.attacks.perturb moved to obliviate.perturb; import it from there",
    DeprecationWarning,
    stacklevel=2,
)
