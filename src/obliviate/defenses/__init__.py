"""Defenses that run after unlearning: healing with spares and twins (:mod:`.healing`) and
the twin index it draws from (:mod:`.similarity`).

RURK and ROKA are unlearners and live in :mod:`obliviate.unlearn.methods`;
``obliviate.defenses.rurk`` / ``.roka`` are deprecated aliases that import with a warning.
"""

from obliviate.defenses import healing, similarity

__all__ = ["healing", "similarity"]
