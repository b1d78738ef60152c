"""Render an HTML report to a PNG with headless Chromium (issue #7: check the page renders).

    python -m obliviate.report.screenshot report/report.html report/screenshot.png

Uses Debian's ``chromium`` (``apt-get install chromium``); a missing browser raises
:class:`ChromiumNotFoundError` saying so. The page is loaded from a ``file://`` URL with a fresh
throw-away profile; the PNG is ``width`` × ``height`` pixels (the top of the page when it is
taller).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from obliviate.errors import ObliviateError

BROWSERS = ("chromium", "chromium-browser")


class ChromiumNotFoundError(ObliviateError, FileNotFoundError):
    """No headless Chromium executable on PATH."""


class ScreenshotError(ObliviateError, RuntimeError):
    """Chromium ran but produced no screenshot."""


def find_chromium(browser: str | None = None) -> str:
    """Path of the Chromium executable (``browser`` if given, else the first of BROWSERS)."""
    names = (browser,) if browser else BROWSERS
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise ChromiumNotFoundError(
        f"no Chromium executable found (looked for {', '.join(names)} on PATH); install it "
        "with `apt-get install chromium` or pass browser=PATH"
    )


def screenshot(
    html_path: str | Path,
    png_path: str | Path,
    *,
    width: int = 1280,
    height: int = 4000,
    browser: str | None = None,
    timeout: float = 120.0,
) -> Path:
    """Screenshot ``html_path`` into ``png_path`` (``width`` × ``height``) and return its path.

    Raises ChromiumNotFoundError without a browser, FileNotFoundError for a missing page, and
    ScreenshotError (with Chromium's stderr) when no PNG was written.
    """
    exe = find_chromium(browser)
    html = Path(html_path).resolve()
    if not html.is_file():
        raise FileNotFoundError(f"no HTML page at {html}")
    if width < 1 or height < 1:
        raise ValueError(f"width and height must be positive, got {width}×{height}")
    png = Path(png_path).resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="obliviate-chromium-") as profile:
        cmd = [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--disable-extensions",
            f"--user-data-dir={profile}",
            f"--screenshot={png}",
            f"--window-size={width},{height}",
            html.as_uri(),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if not png.is_file() or png.stat().st_size == 0:
        raise ScreenshotError(
            f"chromium exited with {proc.returncode} and wrote no {png}: {proc.stderr[-2000:]}"
        )
    return png


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("html", type=Path, help="the report's HTML page")
    p.add_argument("png", type=Path, help="where to write the screenshot")
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=4000)
    p.add_argument("--browser", default=None, help="Chromium executable (default: on PATH)")
    a = p.parse_args(argv)
    try:
        out = screenshot(a.html, a.png, width=a.width, height=a.height, browser=a.browser)
    except (ObliviateError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
