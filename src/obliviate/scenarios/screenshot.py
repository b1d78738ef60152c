"""Screenshot of an HTML report, moved to :mod:`obliviate.report.screenshot`; this name stays
importable and runnable (``python -m obliviate.scenarios.screenshot PAGE PNG``)."""

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
