"""Deprecated location of :mod:`obliviate.unlearn.methods.roka` (a registered unlearner, so it
lives with the other methods). Importing this module warns; it will be removed in the release
after 0.2."""

import warnings

from obliviate.unlearn.methods.roka import *  # noqa: F403
from obliviate.unlearn.methods.roka import __all__  # noqa: F401

warnings.warn(
    "obliviate.defenses.roka moved to obliviate.unlearn.methods.roka; import it from there",
    DeprecationWarning,
    stacklevel=2,
)
