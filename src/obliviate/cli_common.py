"""What every ``obliviate`` verb module shares: the Typer apps, the console and option parsers.

``obliviate.cli`` defines the core verbs and registers the verb groups of ``cli_attacks``,
``cli_heal`` and ``cli_scenarios``; those import only this module, never ``obliviate.cli``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from obliviate.config import check_seed, check_seeds
from obliviate.errors import ConfigError
from obliviate.utils import parse_device

app = typer.Typer(
    name="obliviate",
    help="Robust machine unlearning: unlearn, attack, heal, and audit against a gold retrain.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Datasets shipped offline in packages.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console()


def _fail(e: Exception) -> NoReturn:
    typer.echo(f"error: {e}", err=True)  # one unwrapped line that names the bad input
    raise typer.Exit(code=2)


#: Folders no output may be written under (kernel and device file systems).
_SYSTEM_DIRS = (Path("/proc"), Path("/sys"), Path("/dev"))


def check_output_path(path: Path, kind: str) -> None:
    """Refuse (:class:`ConfigError`, naming ``path``) an output that cannot be written: one under
    an existing file or a system folder, a folder where a ``"file"`` is wanted (or a file where
    a ``"folder"`` is), or one whose nearest existing folder is not writable. Nothing is created."""
    resolved = path.expanduser().absolute()
    for sysdir in _SYSTEM_DIRS:
        if resolved == sysdir or sysdir in resolved.parents:
            raise ConfigError(f"cannot write {path}: it lies under the system folder {sysdir}")
    if kind == "file" and path.is_dir():
        raise ConfigError(f"cannot write {path}: it is a folder, expected a file path")
    if kind == "folder" and path.exists() and not path.is_dir():
        raise ConfigError(f"cannot write {path}: it is a file, expected a folder")
    for parent in resolved.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"cannot write {path}: {parent} is a file, not a folder")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise ConfigError(f"cannot write {path}: folder {parent} is not writable")
            return


def _out_path(value: Path | None, kind: str) -> Path | None:
    if value is not None:
        try:
            check_output_path(value, kind)
        except ConfigError as e:
            _fail(e)
    return value


def _out_file(value: Path | None) -> Path | None:
    """Option callback: ``value`` must be writable as a file (checked before the verb runs)."""
    return _out_path(value, "file")


def _out_dir(value: Path | None) -> Path | None:
    """Option callback: ``value`` must be writable as a folder (checked before the verb runs)."""
    return _out_path(value, "folder")


def _parse_classes(classes: str | None) -> list[str] | None:
    return None if not classes else [c.strip() for c in classes.split(",") if c.strip()]


def _size(v: str | None, name: str = "size") -> int | float | None:
    """A size option: an integer count, or a fraction in (0, 1). A float that is a whole number
    (``2.0``, ``1.0``) is ambiguous and refused, as is a non-finite one; :class:`ConfigError`
    names ``name``."""
    if v is None:
        return None
    try:
        return int(v)
    except ValueError:
        pass
    try:
        f = float(v)
    except ValueError:
        raise ConfigError(
            f"{name} expects an integer count or a fraction in (0, 1), got {v!r}"
        ) from None
    if not (math.isfinite(f) and 0.0 <= f < 1.0):
        raise ConfigError(
            f"{name} must be an integer count or a fraction in (0, 1), got {v!r}: pass an "
            "integer for a count"
        )
    return f


def _device_option(value: str | None) -> str | None:
    """Typer callback of every ``--device``: :func:`obliviate.utils.parse_device` refuses an
    unknown or unavailable device (one line, exit status 2) before the verb starts."""
    if value is not None:
        try:
            parse_device(value)
        except ConfigError as e:
            _fail(ConfigError(f"--device: {e}"))
    return value


def _seed_option(param: typer.CallbackParam, value: int | None) -> int | None:
    """Typer callback of every seed option: :func:`obliviate.config.check_seed` (integers in
    [0, 2^63 − 1]) before the verb starts."""
    if value is not None:
        try:
            check_seed(value, "--" + str(param.name).replace("_", "-"))
        except ConfigError as e:
            _fail(e)
    return value


def _seeds(v: str | None) -> list[int] | None:
    """``--seeds a,b,…``: each a seed (:func:`check_seed`), at most
    :data:`~obliviate.config.SEEDS_MAX_COUNT` of them, no duplicates."""
    if v is None:
        return None
    try:
        seeds = [int(s) for s in v.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--seeds expects comma-separated integers, got {v!r}") from None
    return check_seeds(seeds, "--seeds")


#: The ``--device`` option of every verb.
DEVICE_HELP = "cpu, cuda, cuda:N or auto."


def _option_value(value: str) -> Any:
    """A ``--set`` value: JSON when it parses (numbers, lists, objects, true/false), else the
    string itself (e.g. a method name)."""
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def print_metrics(
    title: str, metrics: dict[str, Any], class_names: list[str] | None = None
) -> None:
    """Print split accuracies, then per-class test accuracy, as rich tables."""
    t = Table(title=title)
    t.add_column("metric")
    t.add_column("value", justify="right")
    for k, v in metrics.items():
        if isinstance(v, float | int):
            t.add_row(k, f"{v:.2f}")
    console.print(t)
    pc = metrics.get("per_class/test")
    if pc:
        t2 = Table(title="test accuracy per class (%)")
        for name in pc:
            t2.add_column(str(name), justify="right")
        t2.add_row(*[f"{v:.1f}" for v in pc.values()])
        console.print(t2)


__all__ = [
    "DEVICE_HELP",
    "_device_option",
    "_fail",
    "_option_value",
    "_out_dir",
    "_out_file",
    "_parse_classes",
    "_seed_option",
    "_seeds",
    "_size",
    "app",
    "check_output_path",
    "console",
    "data_app",
    "print_metrics",
]
