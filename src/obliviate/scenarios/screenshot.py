"""Re-export of :mod:`obliviate.report.screenshot` under the scenarios package, runnable as
``python -m obliviate.scenarios.screenshot PAGE.html SHOT.png``."""

import sys

from obliviate.report.screenshot import (
    BROWSERS,
    ChromiumNotFoundError,
    ScreenshotError,
    find_chromium,
    main,
    screenshot,
)

__all__ = [
    "BROWSERS",
    "ChromiumNotFoundError",
    "ScreenshotError",
    "find_chromium",
    "main",
    "screenshot",
]

if __name__ == "__main__":
    sys.exit(main())
