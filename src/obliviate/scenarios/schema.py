"""The scenario schema: a YAML file that chains DESIGN.md's steps, validated with line numbers.

A scenario names a dataset and split, a model and its training recipe, one request or a
*sequence* of requests (explicit ids, a JSON file, an attack strategy with a budget, or an
indirect attack), the unlearning methods with their configs, the defenses (healing), the audit
options, the seeds and the device. :func:`load_scenario` reads it; every unknown key, wrong type
or unknown name raises :class:`ScenarioError` whose message names the key *and the file line*
(``scn.yaml:12: methods[1].config.lr: …``): the YAML is *composed* (not just loaded) so that each
key keeps its source line, and pydantic's error locations are mapped back onto those lines.

Two conveniences keep suites short: ``extends: base.yaml`` (a path relative to the file) deep-merges
this file over another one, and ``sizes: {quick: {...}, full: {...}}`` holds overlays picked with
``size=`` (mappings merge key by key; lists and scalars replace).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationError,
    field_validator,
)
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from obliviate._io import hash_parts
from obliviate.config import build_config
from obliviate.errors import ConfigError, ObliviateError
from obliviate.unlearn import UNLEARNERS
from obliviate.unlearn.tune import TUNE_SCORERS, resolve_space

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


class AuditSpec(_Strict):
    """Options of :func:`obliviate.audit.audit` (DESIGN.md "Definitions to share")."""

    taus: list[float] = Field(default_factory=lambda: [0.03], min_length=1)
    perturbation: str = "gaussian"
    c: int | None = Field(None, ge=1)
    metrics: list[str] | None = None
    residual_max_samples: int | None = Field(None, ge=1)
    contamination_k: int = Field(3, ge=1)
    n_max_mia: int = Field(5000, ge=2)
    attack_kw: dict[str, Any] = Field(default_factory=dict)


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
        from obliviate.train import TrainConfig

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
        from obliviate.unlearn import UNLEARNERS

        return [m for m in self.methods if not ({"exact"} & UNLEARNERS.get(m.name).tags)]

    def matched_methods(self) -> list[MethodSpec]:
        """Methods that the ``matched_forgetting`` stopping rule applies to (empty if unset)."""
        mf = self.matched_forgetting
        if mf is None:
            return []
        if mf.methods is not None:
            return [self.method(k) for k in mf.methods]
        from obliviate.unlearn import UNLEARNERS

        return [m for m in self.methods if _has_stop_rule(UNLEARNERS.get(m.name).Config)]

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


def canonical_json(obj: Any) -> str:
    """Deterministic JSON (sorted keys, no spaces) used by every hash of the scenario layer."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


# ------------------------------------------------------------------------------ YAML + lines


def compose_yaml(text: str, origin: str) -> tuple[Any, dict[Loc, int]]:
    """Parse YAML into plain data plus ``{location: line}`` (1-based) for every key and item.

    Duplicate keys and YAML merge keys (``<<``) are refused (use ``extends``).
    """
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        raise ScenarioError(f"{origin}: not valid YAML: {e}") from None
    if root is None:
        raise ScenarioError(f"{origin}: the file is empty")
    lines: dict[Loc, int] = {}
    cons = yaml.constructor.SafeConstructor()

    def conv(node: yaml.Node, loc: Loc) -> Any:
        lines.setdefault(loc, node.start_mark.line + 1)
        if isinstance(node, MappingNode):
            out: dict[Any, Any] = {}
            for kn, vn in node.value:
                if not isinstance(kn, ScalarNode):
                    raise ScenarioError(f"{origin}:{kn.start_mark.line + 1}: keys must be scalars")
                if kn.tag == "tag:yaml.org,2002:merge":
                    raise ScenarioError(
                        f"{origin}:{kn.start_mark.line + 1}: YAML merge keys (<<) are not "
                        "supported; use `extends: other.yaml`"
                    )
                try:
                    key = cons.construct_object(kn, deep=True)
                except yaml.YAMLError as e:
                    raise ScenarioError(f"{origin}:{kn.start_mark.line + 1}: {e}") from None
                if key in out:
                    raise ScenarioError(
                        f"{origin}:{kn.start_mark.line + 1}: {_dotted(loc + (key,))}: duplicate key"
                    )
                lines[loc + (key,)] = kn.start_mark.line + 1
                out[key] = conv(vn, loc + (key,))
            return out
        if isinstance(node, SequenceNode):
            return [conv(v, loc + (i,)) for i, v in enumerate(node.value)]
        try:
            return cons.construct_object(node, deep=True)
        except yaml.YAMLError as e:
            raise ScenarioError(f"{origin}:{node.start_mark.line + 1}: {e}") from None

    return conv(root, ()), lines


def _dotted(loc: Loc) -> str:
    s = ""
    for p in loc:
        s += f"[{p}]" if isinstance(p, int) else (f".{p}" if s else str(p))
    return s or "(top level)"


def _merge(
    base: Any, over: Any, base_lines: dict[Loc, Any], over_lines: dict[Loc, Any], loc: Loc = ()
) -> tuple[Any, dict[Loc, Any]]:
    """Deep-merge ``over`` onto ``base`` (mappings key by key; anything else replaces) and keep
    each value's line (and file) from the side it came from."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        lines = dict(base_lines)
        for k, v in over.items():
            sub = loc + (k,)
            if k in base:
                merged, sub_lines = _merge(
                    base[k],
                    v,
                    {lk: ln for lk, ln in lines.items() if lk[: len(sub)] == sub},
                    {lk: ln for lk, ln in over_lines.items() if lk[: len(sub)] == sub},
                    sub,
                )
                lines = {lk: ln for lk, ln in lines.items() if lk[: len(sub)] != sub}
                lines.update(sub_lines)
                out[k] = merged
            else:
                out[k] = copy.deepcopy(v)
                lines.update({lk: ln for lk, ln in over_lines.items() if lk[: len(sub)] == sub})
        return out, lines
    return copy.deepcopy(over), {lk: ln for lk, ln in over_lines.items() if lk[: len(loc)] == loc}


@dataclasses.dataclass
class _Source:
    """Data + per-location (file, line) of a scenario file after ``extends`` and ``sizes``."""

    data: dict[str, Any]
    where: dict[Loc, tuple[str, int]]


def _read(path: Path, seen: tuple[Path, ...] = ()) -> _Source:
    """Compose ``path`` and deep-merge it over its ``extends`` chain (``sizes`` merge too)."""
    path = path.resolve()
    if path in seen:
        chain = " → ".join(str(p) for p in (*seen, path))
        raise ScenarioError(f"{path}: `extends` forms a cycle: {chain}")
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ScenarioError(f"scenario file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ScenarioError(f"scenario file {path} cannot be read: {e}") from None
    data, lines = compose_yaml(text, str(path))
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}:1: a scenario must be a mapping of keys, got {_kind(data)}")
    where = {loc: (str(path), ln) for loc, ln in lines.items()}
    ext = data.pop("extends", None)
    if ext is None:
        return _Source(data, where)
    if not isinstance(ext, str):
        raise ScenarioError(f"{path}:{lines[('extends',)]}: extends: expected a file path")
    parent = _read(path.parent / ext, seen=(*seen, path))
    merged, merged_where = _merge(parent.data, data, parent.where, where)
    return _Source(merged, merged_where)


def _apply_size(src: _Source, size: str | None, origin: str) -> _Source:
    sizes = src.data.pop("sizes", None)
    if sizes is None:
        if size is not None:
            raise ScenarioError(f"{origin}: size {size!r} asked for, but the file has no `sizes`")
        return src
    if not isinstance(sizes, dict) or not all(isinstance(v, dict) for v in sizes.values()):
        ln = src.where.get(("sizes",), (origin, 0))[1]
        raise ScenarioError(f"{origin}:{ln}: sizes: expected {{size name: {{overlay}}}}")
    if size is None:
        return src
    if size not in sizes:
        raise ScenarioError(f"{origin}: unknown size {size!r}; the file defines {sorted(sizes)}")
    prefix: Loc = ("sizes", size)
    over_where = {loc[2:]: w for loc, w in src.where.items() if loc[:2] == prefix and len(loc) > 2}
    base_where = {loc: w for loc, w in src.where.items() if loc[:1] != ("sizes",)}
    data, where = _merge(src.data, sizes[size], base_where, over_where)
    return _Source(data, where)


def _kind(v: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string"}.get(type(v), type(v).__name__)


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
    try:
        scn = Scenario.model_validate(data)
    except ValidationError as e:
        probs = []
        for err in e.errors():
            f, ln, key = _locate(tuple(err["loc"]), data, where, origin)
            probs.append((f, ln, key, _pyd_message(err)))
        _raise(probs)
        raise  # pragma: no cover - _raise always raises when there are errors
    scn._base_dir = base_dir
    scn._origin = origin
    probs = [(*_locate(loc, data, where, origin), msg) for loc, msg in semantic_problems(scn)]
    _raise(probs)
    return scn


def _config_problems(cls: type, values: Mapping[str, Any], loc: Loc) -> list[tuple[Loc, str]]:
    """Per-key checks of ``values`` against config dataclass ``cls`` (unknown keys, types)."""
    out: list[tuple[Loc, str]] = []
    names = {f.name for f in dataclasses.fields(cls)}
    good: dict[str, Any] = {}
    for k, v in values.items():
        if k not in names:
            out.append((loc + (k,), f"unknown option for {cls.__name__}; known: {sorted(names)}"))
            continue
        try:
            build_config(cls, {k: v})
            good[k] = v
        except ObliviateError as e:
            out.append((loc + (k,), str(e)))
    if not out:
        try:
            build_config(cls, good)
        except ObliviateError as e:
            out.append((loc, str(e)))
    return out


def semantic_problems(scn: Scenario) -> list[tuple[Loc, str]]:
    """Checks beyond types: registered names, option keys of configs, cross-references."""
    from obliviate.audit import AUDIT_METRICS
    from obliviate.data import DATASETS
    from obliviate.models import MODELS
    from obliviate.perturb import PERTURBATIONS
    from obliviate.train import TrainConfig
    from obliviate.unlearn import UNLEARNERS

    p: list[tuple[Loc, str]] = []
    if scn.dataset.name not in DATASETS:
        p.append((("dataset", "name"), f"unknown dataset; known: {DATASETS.names()}"))
    if scn.model.name not in MODELS:
        p.append((("model", "name"), f"unknown model; known: {MODELS.names()}"))
    if "seed" in scn.training:
        p.append(
            (("training", "seed"), "the training seed is the run's seed: list seeds in `seeds`")
        )
    else:
        p += _config_problems(TrainConfig, scn.training, ("training",))
    if len(set(scn.seeds)) != len(scn.seeds):
        p.append((("seeds",), f"duplicate seeds in {scn.seeds}"))
    if scn.independent_requests and scn.attack_model == "gold":
        p.append(
            (("attack_model",), "independent requests are scored with the original model only")
        )
    strategies = _strategies()
    for i, r in enumerate(scn.requests):
        if (
            isinstance(r, StrategyRequest)
            and strategies is not None
            and r.strategy not in strategies
        ):
            p.append(
                (("requests", i, "strategy"), f"unknown strategy; known: {sorted(strategies)}")
            )
        if isinstance(r, FileRequest) and not (scn.base_dir / r.file).is_file():
            p.append((("requests", i, "file"), f"file {scn.base_dir / r.file} does not exist"))
    seen: dict[str, int] = {}
    for i, m in enumerate(scn.methods):
        loc: Loc = ("methods", i)
        if m.key in seen:
            p.append(
                (loc + ("label" if m.label else "name",), f"duplicate method {m.key!r}: set label")
            )
        seen[m.key] = i
        if m.name not in UNLEARNERS:
            p.append((loc + ("name",), f"unknown unlearning method; known: {UNLEARNERS.names()}"))
            continue
        cls = UNLEARNERS.get(m.name)
        p += _config_problems(cls.Config, m.config, loc + ("config",))
        if m.ensemble is not None and "needs_ensemble" not in cls.tags:
            p.append((loc + ("ensemble",), f"method {m.name!r} does not unlearn an ensemble"))
        if m.key in ("original", "gold"):
            p.append((loc + ("label",), f"{m.key!r} is reserved for the reference rows"))
    h = scn.defenses.healing
    if h is not None:
        for j, k in enumerate(h.methods or []):
            if k not in seen:
                p.append((("defenses", "healing", "methods", j), f"no method {k!r} in `methods`"))
        try:
            from obliviate.defenses.healing import HealConfig
        except ImportError:
            HealConfig = None  # noqa: N806 - the healing module is optional here
        if HealConfig is not None:
            p += _config_problems(HealConfig, h.options, ("defenses", "healing", "options"))
        pools, sims = _healing_names()
        for field, names in (("pools", pools), ("similarities", sims)):
            for j, v in enumerate(getattr(h, field)):
                if names is not None and v not in names:
                    p.append((("defenses", "healing", field, j), f"unknown {v!r}; known: {names}"))
    mf = scn.matched_forgetting
    if mf is not None:
        for j, k in enumerate(mf.methods or []):
            loc = ("matched_forgetting", "methods", j)
            if k not in seen:
                p.append((loc, f"no method {k!r} in `methods`"))
            elif scn.methods[seen[k]].name in UNLEARNERS and not _has_stop_rule(
                UNLEARNERS.get(scn.methods[seen[k]].name).Config
            ):
                p.append((loc, f"method {k!r} has no stopping rule (no option stop_forget_acc)"))
        for i, m in enumerate(scn.methods):
            for opt_name in ("stop_forget_acc", "stop_at_val_acc"):
                if opt_name not in m.config or not (mf.methods is None or m.key in mf.methods):
                    continue
                p.append(
                    (
                        ("methods", i, "config", opt_name),
                        "set by `matched_forgetting` (gold's forget accuracy + margin_pp); "
                        "remove it here or list the other methods in matched_forgetting.methods",
                    )
                )
    p += _tune_problems(scn, seen)
    a = scn.audit
    if a.perturbation not in PERTURBATIONS:
        p.append((("audit", "perturbation"), f"unknown; known: {PERTURBATIONS.names()}"))
    for j, t in enumerate(a.taus):
        if not 0.0 <= t <= 1.0:
            p.append((("audit", "taus", j), f"tau must lie in [0, 1] (pixel units), got {t}"))
    for j, name in enumerate(a.metrics or []):
        if name not in AUDIT_METRICS:
            p.append((("audit", "metrics", j), f"unknown metric; known: {list(AUDIT_METRICS)}"))
    return p


def _tune_problems(scn: Scenario, seen: Mapping[str, int]) -> list[tuple[Loc, str]]:
    """Checks of the ``tune`` step: a tuning seed apart from the report seeds, known methods,
    scorer and space options."""
    t = scn.tune
    if t is None:
        return []
    p: list[tuple[Loc, str]] = []
    if t.seed in scn.seeds:
        p.append((("tune", "seed"), f"tuning seed {t.seed} is also a report seed (seeds: "
                  f"{scn.seeds}); report on other seeds"))  # fmt: skip
    if t.scorer not in TUNE_SCORERS:
        p.append((("tune", "scorer"), f"unknown scorer; known: {TUNE_SCORERS.names()}"))
    for field in ("methods", "exclude"):
        keys = getattr(t, field)
        for j, k in enumerate([] if keys == "all" else keys):
            if k not in seen:
                p.append((("tune", field, j), f"no method {k!r} in `methods`"))
    for k, over in t.space.items():  # a registered name not run here is checked, then unused
        if k not in seen and k not in UNLEARNERS:
            p.append((("tune", "space", k), f"no method {k!r} in `methods` or the registry"))
            continue
        try:
            resolve_space(scn.methods[seen[k]].name if k in seen else k, over)
        except ConfigError as e:
            p.append((("tune", "space", k), str(e)))
    for j, k in enumerate([] if t.methods == "all" else t.methods):
        name = scn.methods[seen[k]].name if k in seen else None
        if name in UNLEARNERS and k not in t.space and not resolve_space(name):
            p.append((("tune", "methods", j), f"method {k!r} declares no search space: give "
                      "one in tune.space"))  # fmt: skip
    return p


def _has_stop_rule(config_cls: type) -> bool:
    """Whether an unlearner's config has the matched-forgetting option ``stop_forget_acc``."""
    return any(f.name == "stop_forget_acc" for f in dataclasses.fields(config_cls))


def _strategies() -> list[str] | None:
    """Strategy names of ``obliviate.attacks.requests`` (None while that module is absent)."""
    try:
        from obliviate.attacks.requests import REQUEST_STRATEGIES
    except ImportError:
        return None
    return list(REQUEST_STRATEGIES)


def _healing_names() -> tuple[list[str] | None, list[str] | None]:
    """Pool and similarity names that ``obliviate.defenses.healing`` declares (None if absent)."""
    try:
        from obliviate.defenses import healing
    except ImportError:
        return None, None

    def names(attr: str) -> list[str] | None:
        v = getattr(healing, attr, None)
        if v is None:
            return None
        return sorted(v.names() if hasattr(v, "names") else list(v))

    return names("POOLS"), names("SIMILARITIES")


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
