"""obliviate.steps: one load/save for checkpoints and SISA ensembles; the steps behind the CLI."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from obliviate import steps
from obliviate.data import ForgetRequest
from obliviate.errors import CheckpointError, ConfigError
from obliviate.train import TrainConfig
from obliviate.unlearn.sisa import SisaEnsemble


@pytest.fixture(scope="module")
def data():
    return steps.prepare_data("synthetic", test=0.2, reserve=20, split_seed=0)


def _states_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("fmt", ["checkpoint", "sisa"])
def test_save_and_load_any_artifact_format(data, tmp_path, fmt):
    ds, split = data
    opts = {"shards": 2, "slices": 1} if fmt == "sisa" else {}
    cfg = TrainConfig(epochs=1, batch_size=64)
    tr = steps.train_to(tmp_path / "a", ds, split, "small_cnn", cfg, artifact_format=fmt,
                        options=opts, show_progress=False)  # fmt: skip
    assert isinstance(tr.model, SisaEnsemble) == (fmt == "sisa") and "acc/test" in tr.metrics
    art = steps.load_artifact(tmp_path / "a")
    assert art.format == fmt and art.split.hash == split.hash
    assert _states_equal(art.model, tr.model)
    other = steps.prepare_data("synthetic", test=0.2, reserve=20, split_seed=1)[1]
    with pytest.raises(CheckpointError, match="split"):
        steps.load_artifact(tmp_path / "a", split=other)
    # unlearning dispatches on the format: the method must fit the artifact
    req = ForgetRequest(split.train[:4].tolist())
    wrong = "finetune" if fmt == "sisa" else "sisa"
    with pytest.raises(ConfigError, match="SISA"):
        steps.unlearn_step(wrong, tmp_path / "a", req, out=tmp_path / "x")
    right = "sisa" if fmt == "sisa" else "grad_ascent"
    res = steps.unlearn_step(right, tmp_path / "a", req, out=tmp_path / "u")
    assert res.path == tmp_path / "u" and "acc/forget" in res.metrics
    assert bool(res.notes) == (fmt == "sisa")
    back = steps.load_artifact(tmp_path / "u")
    assert back.format == fmt and _states_equal(back.model, res.model)


def test_cli_modules_do_not_import_cli():
    root = Path(steps.__file__).parents[1]
    for name in ("cli_attacks", "cli_heal", "cli_scenarios", "cli_common"):
        tree = ast.parse((root / f"{name}.py").read_text())
        mods = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        mods |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert "obliviate.cli" not in mods, name
