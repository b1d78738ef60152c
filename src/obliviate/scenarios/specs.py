"""The pydantic models of a scenario's sections (the schema's types, defaults and ranges).

Each section is a strict model (unknown keys refused). The audit section is derived from
:class:`obliviate.audit.AuditConfig`, so an audit option's type, default and range are declared
once, there; the run's ``seed`` and ``device`` are not audit options of a scenario.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SerializerFunctionWrapHandler,
    Tag,
    ValidationError,
    create_model,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from obliviate.audit import AuditConfig
from obliviate.config import check_seed
from obliviate.errors import ConfigError, ObliviateError

Loc = tuple[str | int, ...]


class ScenarioError(ConfigError):
    """A scenario file is invalid. ``problems`` lists ``(file, line, key, message)``."""

    def __init__(
        self, message: str, problems: list[tuple[str, int | None, str, str]] | None = None
    ):
        super().__init__(message)
        self.problems = list(problems or [])


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


# ------------------------------------------------------------------------------- sub-schemas


class DatasetSpec(_Strict):
    """``load_dataset(name, **kwargs)``, optionally restricted to ``classes`` (relabelled)."""

    name: str
    kwargs: dict[str, Any] = Field(default_factory=dict)
    classes: list[int | str] | None = None


class SplitSpec(_Strict):
    """Keyword arguments of :func:`obliviate.data.make_split`. ``seed: null`` = the run's seed."""

    seed: int | None = None
    test: Literal["official"] | int | float = "official"
    val: int | float = 0
    reserve: int | float = 0
    train: int | float | None = None
    train_per_class: int | None = None
    test_per_class: int | None = None

    @field_validator("seed")
    @classmethod
    def _seed(cls, v: int | None) -> int | None:
        return None if v is None else check_seed(v, "split seed")


class ModelSpec(_Strict):
    """A registered architecture (``obliviate models``) and extra ``create_model`` kwargs."""

    name: str = "small_cnn"
    kwargs: dict[str, Any] = Field(default_factory=dict)


class IdsRequest(_Strict):
    """Explicit training-sample ids."""

    ids: list[int] = Field(min_length=1)
    name: str = ""


class FileRequest(_Strict):
    """A JSON request file (``{"ids": [...]}`` or a list), relative to the scenario file."""

    file: str
    name: str = ""


class StrategyRequest(_Strict):
    """An adversarial / random selection by :func:`obliviate.attacks.requests.select_request`.

    ``budget``: a count (int) or a fraction of the remaining training set (float in (0, 1)).
    """

    strategy: str
    budget: int | float
    classes: list[int | str] | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    name: str = ""

    @field_validator("budget")
    @classmethod
    def _budget(cls, v: int | float) -> int | float:
        if isinstance(v, float) and not 0 < v < 1:
            raise ValueError(f"a fractional budget must lie in (0, 1), got {v}")
        if isinstance(v, int) and v < 1:
            raise ValueError(f"a budget count must be >= 1, got {v}")
        return v


class IndirectSpec(_Strict):
    """ROKA's indirect attack: forget the class nearest to ``victim_class``."""

    victim_class: int | str
    by: str = "centroid_cosine"
    mode: str = "class"
    options: dict[str, Any] = Field(default_factory=dict)


class IndirectRequest(_Strict):
    indirect: IndirectSpec
    name: str = ""


_REQUEST_TAGS = ("ids", "file", "strategy", "indirect")


def _request_kind(v: Any) -> str | None:
    if isinstance(v, Mapping):
        for k in _REQUEST_TAGS:
            if k in v:
                return k
    elif isinstance(v, IdsRequest | FileRequest | StrategyRequest | IndirectRequest):
        return {
            IdsRequest: "ids",
            FileRequest: "file",
            StrategyRequest: "strategy",
            IndirectRequest: "indirect",
        }[type(v)]
    return None


RequestSpec = Annotated[
    Annotated[IdsRequest, Tag("ids")]
    | Annotated[FileRequest, Tag("file")]
    | Annotated[StrategyRequest, Tag("strategy")]
    | Annotated[IndirectRequest, Tag("indirect")],
    Discriminator(
        _request_kind,
        custom_error_type="request_form",
        custom_error_message=(
            "a request is one of {ids: [...]}, {file: PATH}, "
            "{strategy: NAME, budget: N, classes: [...], options: {...}} or "
            "{indirect: {victim_class: T, by: centroid_cosine, mode: class}}"
        ),
    ),
]


class EnsembleSpec(_Strict):
    """The SISA ensemble a ``needs_ensemble`` method (``sisa``) unlearns from."""

    shards: int = Field(5, ge=1)
    slices: int = Field(5, ge=1)
    aggregation: Literal["vote", "mean_softmax"] = "vote"


class MethodSpec(_Strict):
    """An unlearner (``obliviate methods``) with its config; ``label`` tells two configs apart."""

    name: str
    config: dict[str, Any] = Field(default_factory=dict)
    label: str | None = None
    ensemble: EnsembleSpec | None = None

    @property
    def key(self) -> str:
        return self.label or self.name


class HealingSpec(_Strict):
    """Healing variants run on every unlearned model of ``methods`` (default: the inexact ones).

    One variant per (pool, similarity, epochs); similarities apply to the ``twins`` pool only.
    ``options`` are fields of :class:`obliviate.defenses.healing.HealConfig` (e.g. ``lr``,
    ``fallback``), passed to :func:`obliviate.defenses.healing.heal` as its ``config``.
    """

    pools: list[str] = Field(default_factory=lambda: ["twins"], min_length=1)
    similarities: list[str] = Field(default_factory=lambda: ["feature_cosine"], min_length=1)
    epochs: list[int] = Field(default_factory=lambda: [1], min_length=1)
    methods: list[str] | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("epochs")
    @classmethod
    def _epochs(cls, v: list[int]) -> list[int]:
        if any(e < 1 for e in v):
            raise ValueError(f"healing epochs must be >= 1, got {v}")
        return v


class DefensesSpec(_Strict):
    """Post-unlearning defenses. (RURK / ROKA are unlearners: list them under ``methods``.)"""

    healing: HealingSpec | None = None


class MatchedForgettingSpec(_Strict):
    """Matched forgetting (ROKA, arXiv 2603.00436 §5: methods compared at equal forgetting).

    Every method of ``methods`` (default: all whose config has ``stop_forget_acc``, i.e. the
    fine-tuning family and ROKA) stops once its forget accuracy on the step's request is
    ``<= gold's + margin_pp``; gold's is measured by the runner on the same images. Methods
    without a stopping rule run as configured. Raise ``max_steps``/``epochs`` so the rule, not
    the step budget, ends the run; rows record the target and whether it was reached.
    """

    margin_pp: float = Field(2.0, ge=0, le=100)
    methods: list[str] | None = None


class TuneSpec(_Strict):
    """The tuning step: each method's hyper-parameters chosen on ``seed``, never reported.

    On the tuning seed the runner trains its own original and gold (request 0 of the sequence)
    and searches each method's space (declared next to the method, merged with ``space``
    overrides option by option; ``null`` drops an option) for the lowest ``scorer`` over
    ``trials`` sequential Optuna trials (``strategy``: ``auto`` enumerates a grid, samples
    ranges with seeded TPE). The report seeds (``seeds``) must not include ``seed``. ``methods``:
    keys to tune or ``all`` (every method with a space) minus ``exclude``. ``eval_max`` caps the
    test, retain and MIA samples a trial is scored on; ``study`` keeps the Optuna study in
    ``<cache>/studies/<scenario config hash>.db``.
    """

    seed: int = 0
    trials: int = Field(8, ge=1)
    scorer: str = "avg_gap"
    methods: list[str] | Literal["all"] = "all"
    exclude: list[str] = Field(default_factory=list)
    space: dict[str, dict[str, Any]] = Field(default_factory=dict)
    strategy: Literal["auto", "grid", "random", "tpe"] = "auto"
    eval_max: int | None = Field(None, ge=2)
    study: bool = True


# ------------------------------------------------------------------------------- audit section

#: AuditConfig fields a scenario never sets: each run supplies its own seed and device.
RUN_OPTIONS = ("seed", "device")
#: Audit options always present in the section's dump (and so in the config hash). The other
#: options enter the dump only when set away from their default, so a scenario that leaves them
#: alone hashes as if the options did not exist, and its cached rows stay valid.
HASHED_ALWAYS = (
    "taus", "perturbation", "c", "metrics", "residual_max_samples", "contamination_k",
    "n_max_mia", "attack_kw",
)  # fmt: skip


_RUN_OPTION_HELP = {
    "seed": "the audit seed is the run's seed: list the seeds in the scenario's `seeds`",
    "device": "the audit device is the run's device: set the scenario's `device` (or the run's)",
}


def _error(loc: Loc, value: Any, message: str) -> InitErrorDetails:
    return InitErrorDetails(
        type=PydanticCustomError("value_error", "{m}", {"m": message}), loc=loc, input=value
    )


def _option_errors(name: str, value: Any) -> list[InitErrorDetails]:
    """Errors of one option by :meth:`AuditConfig.validate`, per item for a list option."""
    try:
        AuditConfig(**{name: value})
    except ObliviateError as e:
        items = []
        for j, item in enumerate(value if isinstance(value, list) else []):
            try:
                AuditConfig(**{name: [item]})
            except ObliviateError as e_item:
                items.append(_error((name, j), item, str(e_item)))
        return items or [_error((name,), value, str(e))]
    return []


class _AuditOptions(_Strict):
    """Base of :class:`AuditSpec`: validation through :class:`AuditConfig` and the dump."""

    @model_validator(mode="before")
    @classmethod
    def _no_run_options(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            bad = [k for k in RUN_OPTIONS if k in data]
            if bad:
                errors = [_error((k,), data[k], _RUN_OPTION_HELP[k]) for k in bad]
                raise ValidationError.from_exception_data(cls.__name__, errors)
        return data

    @model_validator(mode="after")
    def _validate_config(self) -> _AuditOptions:
        errors = [e for k in type(self).model_fields for e in _option_errors(k, getattr(self, k))]
        if not errors:
            try:
                self.to_config()
            except ObliviateError as e:
                errors.append(_error((), self.options(), str(e)))
        if errors:
            raise ValidationError.from_exception_data(type(self).__name__, errors)
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        fields = type(self).model_fields
        return {
            k: v
            for k, v in handler(self).items()
            if k in HASHED_ALWAYS or v != fields[k].get_default(call_default_factory=True)
        }

    def options(self) -> dict[str, Any]:
        """The audit options as keywords of :func:`obliviate.audit.audit` (no seed, no device)."""
        return {k: getattr(self, k) for k in type(self).model_fields}

    def to_config(self, seed: int = 0, device: str = "cpu") -> AuditConfig:
        """The :class:`AuditConfig` of a run with ``seed`` on ``device`` (validated)."""
        return AuditConfig(**self.options(), seed=seed, device=device)


def _audit_fields() -> dict[str, Any]:
    """(type, Field) of every :class:`AuditConfig` option but :data:`RUN_OPTIONS`."""
    hints = typing.get_type_hints(AuditConfig)
    out: dict[str, Any] = {}
    for f in dataclasses.fields(AuditConfig):
        if f.name in RUN_OPTIONS:
            continue
        help_ = f.metadata.get("help", "")
        if f.default_factory is not dataclasses.MISSING:
            field = Field(default_factory=f.default_factory, description=help_)
        else:
            field = Field(f.default, description=help_)
        out[f.name] = (hints[f.name], field)
    return out


AuditSpec = create_model(
    "AuditSpec",
    __base__=_AuditOptions,
    __module__=__name__,
    __doc__='Options of :func:`obliviate.audit.audit` (DESIGN.md "Definitions to share"): the '
    "fields of :class:`~obliviate.audit.AuditConfig` but ``seed`` and ``device``, validated by it.",
    **_audit_fields(),
)


def canonical_json(obj: Any) -> str:
    """Deterministic JSON (sorted keys, no spaces) used by every hash of the scenario layer."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


__all__ = [
    "HASHED_ALWAYS",
    "RUN_OPTIONS",
    "AuditSpec",
    "DatasetSpec",
    "DefensesSpec",
    "EnsembleSpec",
    "FileRequest",
    "HealingSpec",
    "IdsRequest",
    "IndirectRequest",
    "IndirectSpec",
    "Loc",
    "MatchedForgettingSpec",
    "MethodSpec",
    "ModelSpec",
    "RequestSpec",
    "ScenarioError",
    "SplitSpec",
    "StrategyRequest",
    "TuneSpec",
    "canonical_json",
]
