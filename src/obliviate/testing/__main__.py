"""``python -m obliviate.testing [NAME ...]``: the conformance checks as a pass/fail table."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from obliviate.testing import CHECK_NAMES, DEFAULT_TIMEOUT_S, ConformanceError, iter_checks
from obliviate.unlearn import UNLEARNERS


def _table(rows: list[list[str]]) -> list[str]:
    """Left-aligned columns, two spaces apart (full names, never truncated)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def main(argv: Sequence[str] | None = None) -> int:
    """Check the named (default: every registered) methods on the default case; print a
    pass/fail table (``ok``, ``FAIL``, ``-`` not applicable) and each failure's reason; return 1
    if any check failed, else 0."""
    p = argparse.ArgumentParser(
        prog="python -m obliviate.testing",
        description="Run the unlearner conformance checks (obliviate.testing.check_unlearner).",
    )
    p.add_argument("names", nargs="*", metavar="NAME", help="methods (default: all registered)")
    p.add_argument("--device", default="cpu", help="device the methods run on (default: cpu)")
    p.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="hang guard per unlearn call, s"
    )
    args = p.parse_args(argv)
    names = args.names or UNLEARNERS.names()
    for n in names:
        UNLEARNERS.get(n)  # an unknown name fails before any work, listing the known ones
    rows = [["method", *CHECK_NAMES]]
    reasons: list[str] = []
    for n in names:
        status = dict.fromkeys(CHECK_NAMES, "-")
        for check_name, run in iter_checks(n, device=args.device, timeout_s=args.timeout):
            try:
                run()
                status[check_name] = "ok"
            except ConformanceError as e:
                status[check_name] = "FAIL"
                reasons += [f"{n} / {c}: {why}" for c, why in e.failures.items()]
        rows.append([n, *status.values()])
    print("\n".join(_table(rows)))
    failed = sum("FAIL" in r for r in rows[1:])
    print(f"\n{len(names) - failed} of {len(names)} methods pass every check")
    for line in reasons:
        print(line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
