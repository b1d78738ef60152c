"""Defenses of the three seed papers: healing with spares/twins, RURK and ROKA.

RURK and ROKA register as unlearners (so the conformance suite covers them); healing is a
post-unlearning step (``unlearn → heal``). Importing this package imports every module in it,
so each registers itself.
"""

from importlib import import_module
from pathlib import Path

for _f in sorted(Path(__file__).parent.glob("*.py")):
    if _f.stem != "__init__" and not _f.stem.startswith("_"):
        import_module(f"{__name__}.{_f.stem}")
