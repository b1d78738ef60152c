"""Exceptions raised by obliviate. Every error names the offending input (ids, file, option)."""

from __future__ import annotations


class ObliviateError(Exception):
    """Base class of every error obliviate raises on purpose."""


class UnknownNameError(ObliviateError, KeyError):
    """A name looked up in a registry (dataset, model, method, metric) does not exist."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class DatasetNotInstalledError(ObliviateError, FileNotFoundError):
    """A real dataset's package is missing; the message says which package provides it."""


class DataFormatError(ObliviateError, ValueError):
    """A data file is malformed, or refused (e.g. a pickle with disallowed objects)."""


class RequestError(ObliviateError, ValueError):
    """A forget request is invalid: empty, duplicated, unknown or reserved ids."""


class SplitError(ObliviateError, ValueError):
    """A split cannot be made with the sizes asked for, or does not match its dataset."""


class CheckpointError(ObliviateError, ValueError):
    """A checkpoint is missing, corrupt, truncated, or does not match what the caller expects."""


class ConfigError(ObliviateError, ValueError):
    """An option has a wrong value or type; the message names the option."""


class DivergenceError(ObliviateError, FloatingPointError):
    """An unlearning method diverged: its loss or the weights it produced are not finite.

    The message names the method, the request and where it diverged (the optimisation step, or
    the first non-finite tensor). A ``FloatingPointError`` too, so callers that catch that
    (e.g. tuning, where a diverging trial scores ``inf``) keep working.
    """

    def __init__(self, message: str, *, method: str, tensor: str | None = None) -> None:
        super().__init__(message)
        self.method = method
        self.tensor = tensor
