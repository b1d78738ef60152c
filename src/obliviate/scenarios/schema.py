"""The scenario schema: a YAML file that chains DESIGN.md's steps, validated with line numbers.

A scenario names a dataset and split, a model and its training recipe, one request or a
*sequence* of requests (explicit ids, a JSON file, an attack strategy with a budget, or an
indirect attack), the unlearning methods with their configs, the defenses (healing), the audit
options (an :class:`obliviate.audit.AuditConfig` without seed and device), the seeds and the
device. :func:`load_scenario` reads it; every unknown key, wrong type or unknown name raises
:class:`ScenarioError` whose message names the key *and the file line*
(``scn.yaml:12: methods[1].config.lr: …``): pydantic's error locations and those of the semantic
checks are mapped back onto the lines that :mod:`~obliviate.scenarios.yaml_lines` kept.

Two conveniences keep suites short: ``extends: base.yaml`` (a path relative to the file) deep-merges
this file over another one, and ``sizes: {quick: {...}, full: {...}}`` holds overlays picked with
``size=`` (mappings merge key by key; lists and scalars replace).

Modules: :mod:`~obliviate.scenarios.specs` (the section models), :mod:`~obliviate.scenarios.
yaml_lines` (YAML with lines, ``extends``, ``sizes``), :mod:`~obliviate.scenarios.checks` (the
semantic checks against the registries); this module holds :class:`Scenario` and the loaders.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr, ValidationError, field_validator

from obliviate._io import hash_parts
from obliviate.config import build_config, check_seeds
from obliviate.errors import ConfigError
from obliviate.scenarios.checks import has_stop_rule, semantic_problems
from obliviate.scenarios.specs import (
    _REQUEST_TAGS,
    AuditSpec,
    DatasetSpec,
    DefensesSpec,
    EnsembleSpec,
    FileRequest,
    HealingSpec,
    IdsRequest,
    IndirectRequest,
    IndirectSpec,
    Loc,
    MatchedForgettingSpec,
    MethodSpec,
    ModelSpec,
    RequestSpec,
    ScenarioError,
    SplitSpec,
    StrategyRequest,
    TuneSpec,
    _Strict,
    canonical_json,
)
from obliviate.scenarios.yaml_lines import _apply_size, _dotted, _kind, _read, _Source, compose_yaml
from obliviate.train import TrainConfig
from obliviate.unlearn import UNLEARNERS

#: What a scenario name may hold: it becomes folder and store names.
_NAME = re.compile(r"[A-Za-z0-9][\w .+=@-]{0,127}")


class Scenario(_Strict):
    """A validated scenario. Build with :func:`load_scenario` or :meth:`from_dict`."""

    name: str
    description: str = ""
    dataset: DatasetSpec
    split: SplitSpec = Field(default_factory=SplitSpec)
    model: ModelSpec = Field(default_factory=ModelSpec)
    training: dict[str, Any] = Field(default_factory=dict)
    requests: list[RequestSpec] = Field(min_length=1)
    methods: list[MethodSpec] = Field(default_factory=list)
    defenses: DefensesSpec = Field(default_factory=DefensesSpec)
    audit: AuditSpec = Field(default_factory=AuditSpec)
    matched_forgetting: MatchedForgettingSpec | None = None
    tune: TuneSpec | None = None
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    device: str = "cpu"
    attack_model: Literal["original", "gold"] = Field(
        "original",
        description="Model the adversary scores request candidates with: the original model "
        "(every step) or the previous step's gold model.",
    )
    independent_requests: bool = Field(
        False,
        description="Treat ``requests`` as alternatives, not a sequence: each is drawn from the "
        "whole training split, has its own gold retrain and is unlearned from the original (or "
        "the SISA ensemble), so one method is compared across request strategies.",
    )
    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)
    _origin: str = PrivateAttr(default="<scenario>")

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        return check_seeds(v)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if not _NAME.fullmatch(v) or ".." in v:
            raise ValueError(
                f"scenario name {v[:60]!r} may hold only letters, digits, spaces and _ - . + = @ "
                "(at most 128 characters, starting with a letter or digit, no '..'): it names "
                "folders and store rows"
            )
        return v

    @field_validator("requests", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, Mapping) else v

    # ------------------------------------------------------------------ derived
    @property
    def base_dir(self) -> Path:
        return self._base_dir

    @property
    def origin(self) -> str:
        return self._origin

    def train_config(self, seed: int) -> Any:
        """The :class:`~obliviate.train.TrainConfig` of a run (its seed is the run's seed)."""
        return build_config(TrainConfig, {**self.training, "seed": seed})

    def method(self, key: str) -> MethodSpec:
        for m in self.methods:
            if m.key == key:
                return m
        raise ConfigError(f"scenario {self.name!r} has no method {key!r}")

    def healed_methods(self) -> list[MethodSpec]:
        """Methods whose unlearned models the healing defense repairs."""
        h = self.defenses.healing
        if h is None:
            return []
        if h.methods is not None:
            return [self.method(k) for k in h.methods]
        return [m for m in self.methods if not ({"exact"} & UNLEARNERS.get(m.name).tags)]

    def matched_methods(self) -> list[MethodSpec]:
        """Methods that the ``matched_forgetting`` stopping rule applies to (empty if unset)."""
        mf = self.matched_forgetting
        if mf is None:
            return []
        if mf.methods is not None:
            return [self.method(k) for k in mf.methods]
        return [m for m in self.methods if has_stop_rule(UNLEARNERS.get(m.name).Config)]

    def config_hash(self) -> str:
        """SHA-256 of the validated scenario (canonical JSON): keys its rows in the store."""
        data = self.model_dump(mode="json")
        if not self.independent_requests:  # left out at its default: other hashes stay as they are
            del data["independent_requests"]
        return hash_parts(canonical_json(data))

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, origin: str = "<dict>", base_dir: Path | None = None
    ) -> Scenario:
        """Validate a plain mapping (no line numbers in errors)."""
        return _validate(dict(data), {}, origin, base_dir or Path.cwd())


# ------------------------------------------------------------------------------ validation


def _locate(
    loc: Loc, data: Any, where: Mapping[Loc, tuple[str, int]], origin: str
) -> tuple[str, int | None, str]:
    """Map a pydantic error location onto the data: drop union tags, find the nearest line."""
    if len(loc) >= 3 and loc[0] == "requests" and loc[2] in _REQUEST_TAGS:
        loc = loc[:2] + loc[3:]  # the discriminated union puts its tag after the index
    kept: list[str | int] = []
    node = data
    for i, p in enumerate(loc):
        if (
            isinstance(node, dict)
            and p in node
            or isinstance(node, list)
            and isinstance(p, int)
            and 0 <= p < len(node)
        ):
            kept.append(p)
            node = node[p]
        elif i == len(loc) - 1 and isinstance(p, str) and isinstance(node, dict):
            kept.append(p)  # a missing or unknown final key: name it, point at its parent
        # else: a union tag or a model name pydantic inserted; skip it
    key = tuple(kept)
    for n in range(len(key), -1, -1):
        if key[:n] in where:
            f, ln = where[key[:n]]
            return f, ln, _dotted(key)
    return origin, None, _dotted(key)


def _raise(problems: list[tuple[str, int | None, str, str]]) -> None:
    if not problems:
        return
    msgs = [f"{f}:{ln}: {k}: {m}" if ln else f"{f}: {k}: {m}" for f, ln, k, m in problems]
    head = "invalid scenario" if len(msgs) == 1 else f"invalid scenario ({len(msgs)} problems)"
    raise ScenarioError(f"{head}: " + "; ".join(msgs), problems)


def _pyd_message(err: Mapping[str, Any]) -> str:
    t = err.get("type")
    if t == "extra_forbidden":
        return "unknown key"
    if t == "missing":
        return "required key is missing"
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    inp = err.get("input")
    if t not in ("request_form", "value_error") and isinstance(inp, str | int | float | bool):
        msg += f" (got {inp!r})"
    return msg


def _validate(
    data: dict[str, Any],
    where: Mapping[Loc, tuple[str, int]],
    origin: str,
    base_dir: Path,
) -> Scenario:
    """Type-check ``data``, then run the semantic checks; raise every problem at once.

    Errors of the audit section alone (its values checked by ``AuditConfig``) are reported with
    the semantic problems of the rest, as other range and name checks are.
    """
    audit_errors: list[Any] = []
    try:
        scn = Scenario.model_validate(data)
    except ValidationError as e:
        audit_errors = e.errors()
        if any(err["loc"][:1] != ("audit",) for err in audit_errors):
            _raise([(*_locate(tuple(err["loc"]), data, where, origin), _pyd_message(err))
                    for err in audit_errors])  # fmt: skip
        scn = Scenario.model_validate({k: v for k, v in data.items() if k != "audit"})
    scn._base_dir = base_dir
    scn._origin = origin
    probs = [(*_locate(tuple(err["loc"]), data, where, origin), _pyd_message(err))
             for err in audit_errors]  # fmt: skip
    probs += [(*_locate(loc, data, where, origin), msg) for loc, msg in semantic_problems(scn)]
    _raise(probs)
    return scn


def load_scenario(path: str | Path, *, size: str | None = None) -> Scenario:
    """Read, merge (``extends``, ``sizes[size]``) and validate a scenario YAML file.

    Raises :class:`ScenarioError` naming every bad key with its file and line.
    """
    path = Path(path)
    src = _apply_size(_read(path), size, str(path))
    return _validate(src.data, src.where, str(path), path.resolve().parent)


def scenario_from_yaml(text: str, *, origin: str = "<yaml>", base_dir: Path | None = None,
                       size: str | None = None) -> Scenario:  # fmt: skip
    """Validate a scenario given as YAML text (errors carry ``origin:line``)."""
    data, lines = compose_yaml(text, origin)
    if not isinstance(data, dict):
        raise ScenarioError(f"{origin}:1: a scenario must be a mapping of keys, got {_kind(data)}")
    src = _apply_size(_Source(data, {k: (origin, v) for k, v in lines.items()}), size, origin)
    return _validate(src.data, src.where, origin, base_dir or Path.cwd())


__all__ = [
    "AuditSpec",
    "DatasetSpec",
    "DefensesSpec",
    "EnsembleSpec",
    "FileRequest",
    "HealingSpec",
    "IdsRequest",
    "IndirectRequest",
    "IndirectSpec",
    "MatchedForgettingSpec",
    "MethodSpec",
    "ModelSpec",
    "RequestSpec",
    "Scenario",
    "ScenarioError",
    "SplitSpec",
    "StrategyRequest",
    "TuneSpec",
    "canonical_json",
    "compose_yaml",
    "load_scenario",
    "scenario_from_yaml",
    "semantic_problems",
]
