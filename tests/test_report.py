"""The visual report (issue #7): written from tiny in-memory results-store rows; self-contained
HTML, every section, mean ± std checked against numpy, valid PNGs, determinism, bad input, and a
headless-Chromium screenshot that is not blank."""

from __future__ import annotations

import html
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from obliviate.errors import ConfigError, DataFormatError
from obliviate.scenarios.report import (
    SECTION_TITLES,
    aggregate,
    build_report,
    report_from_store,
)

TAUS = (0.0, 0.03, 0.1)
CLASSES = ("zero", "one", "two")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ROOT = Path(__file__).resolve().parents[1]


def _row(scenario, step, method, seed, metrics, *, step_index=0, variant="", info=None, t=1.0):
    return {
        "scenario": scenario,
        "step": step,
        "step_index": step_index,
        "method": method,
        "variant": variant,
        "seed": seed,
        "config_hash": f"{scenario}-{method}-{variant}-{seed}",
        "metrics": metrics,
        "timings": {"seconds": t, "speedup": None},
        "info": {"class_names": list(CLASSES), **(info or {})},  # the dataset's class order
        "versions": {"obliviate": "0.1.0"},
        "created": 1.0,
    }


def _metrics(rng, test, forget, *, gap=1.0, r=1.0, with_r=True, speed=None):
    m = {
        "acc/retain": float(99 - rng.random()),
        "acc/test": float(test + rng.random()),
        "acc/forget": float(forget + rng.random()),
        "acc/val": float(test + rng.random()),
        "ua": float(100 - forget - rng.random()),
        "mia_efficacy": float(20 + 5 * rng.random()),
        "avg_gap": float(gap + 0.2 * rng.random()),
        "pop_mia/auc": 0.52,
        "per_class/test": {c: float(test + 3 * rng.standard_normal()) for c in CLASSES},
        "contamination/damage_nearest": float(rng.random()),
        "contamination/damage_rest": float(0.3 * rng.random()),
        "time_s": float(1 + rng.random()),
    }
    if speed is not None:
        m["speedup"] = speed
    if with_r:
        for tau in TAUS:
            m[f"r_tau@{tau:g}/mean"] = float(r + 0.1 * rng.random() + tau)
            m[f"r_tau@{tau:g}/frac_gt1"] = float(0.3 * rng.random())
    return m


def make_rows() -> tuple[list[dict], list[dict]]:
    """2 methods + gold + original over 2 seeds, one heal row per seed, 3 τ, and a 2-step
    sequential scenario with its ledger."""
    rng = np.random.default_rng(0)
    rows = []
    for seed in (0, 1):
        rows.append(
            _row("demo", "original", "original", seed, _metrics(rng, 97, 99, gap=2.0), t=30)
        )
        gold = _metrics(rng, 97, 96, gap=0.0, with_r=False)
        rows.append(_row("demo", "gold", "gold", seed, gold, t=28.0 + seed))
        fisher = _metrics(rng, 93, 90, gap=1.5, r=1.2, speed=9.0 + seed)
        fisher["r_tau@0/mean"] = "skipped: every forget sample has zero gold hits"
        rows.append(_row("demo", "unlearn", "fisher", seed, fisher, t=3.0 + seed))
        matched = {  # seed 0 stopped by the matched-forgetting rule, seed 1 ran its budget
            "params": {"stop_forget_acc": 6.5},
            "stats": {"steps": 12 if seed == 0 else 200, "stopped_early": seed == 0},
        }
        rurk = _metrics(rng, 95, 94, speed=5.0)
        rows.append(_row("demo", "unlearn", "rurk", seed, rurk, info=matched, t=6))
        heal = _metrics(rng, 96, 95, with_r=False)
        rows.append(
            _row("demo", "heal", "fisher", seed, heal, variant="twins/feature_cosine/e1", t=2)
        )
    for step in (0, 1):
        for step_name, method in (("gold", "gold"), ("unlearn", "fisher")):
            m = _metrics(rng, 96 - step, 95, with_r=False)
            rows.append(
                _row("seq", step_name, method, 0, m, step_index=step, info={"request_size": 10})
            )
    ledger = [
        {
            "scenario": "seq",
            "seed": 0,
            "step_index": step,
            "request_hash": f"{step:064x}",
            "request_size": 10,
            "request_source": "attack:adversarial",
            "method": "fisher",
            "model_version": f"v{step + 1:063x}",
            "parent_version": f"v{step:063x}",
            "metrics_summary": {"acc/test": 95.5 - step, "r_tau@0.03/mean": "skipped: no gold"},
        }
        for step in (0, 1)
    ]
    return rows, ledger


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    rows, ledger = make_rows()
    out = tmp_path_factory.mktemp("report")
    return rows, build_report(rows, ledger, out, title="tiny report", generated=""), out


def test_html_is_self_contained_with_every_section(report):
    _, paths, _ = report
    page = paths.html.read_text(encoding="utf-8")
    assert "http" not in page and "file:" not in page
    srcs = re.findall(r'src="([^"]*)"', page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert len(srcs) == len(paths.images)
    assert all(h.startswith("#") for h in re.findall(r'href="([^"]*)"', page))
    assert "<script" not in page.lower() and "<link" not in page.lower()
    md = paths.markdown.read_text(encoding="utf-8")
    for key, title in SECTION_TITLES.items():
        assert f">{html.escape(title)}</h" in page, key
        assert re.search(rf"^#+ {re.escape(title)}$", md, re.M), key
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):
        assert not link.startswith(("/", "http")) and (paths.markdown.parent / link).is_file()


def _md_table_row(md: str, section: str, label: str) -> list[str]:
    """The cells of ``label``'s row in the first table after heading ``section``."""
    part = md.split(f" {section}\n", 1)[1]
    header = next(line for line in part.splitlines() if line.startswith("| "))
    for line in part.splitlines():
        if line.startswith(f"| {label} |"):
            cols = [c.strip() for c in header.strip("|").split("|")]
            return dict(zip(cols, [c.strip() for c in line.strip("|").split("|")], strict=True))
    raise AssertionError(f"no row {label!r} under {section!r}")


def test_tables_hold_mean_std_and_median_from_numpy(report):
    rows, paths, _ = report
    md = paths.markdown.read_text(encoding="utf-8")
    fisher = [r for r in rows if r["scenario"] == "demo" and r["step"] == "unlearn"]
    fisher = [r for r in fisher if r["method"] == "fisher"]
    test = np.array([r["metrics"]["acc/test"] for r in fisher])
    cells = _md_table_row(md, SECTION_TITLES["metrics"], "fisher")
    assert cells["Test"] == f"{test.mean():.2f} ± {test.std(ddof=1):.2f}"
    r3 = np.array([r["metrics"]["r_tau@0.03/mean"] for r in fisher])
    assert cells["r_τ@0.03"] == f"{r3.mean():.3f} ± {r3.std(ddof=1):.3f}"
    assert cells["r_τ@0"].startswith("—[^")  # skipped on every seed → dash + footnote
    assert "every forget sample has zero gold hits" in md
    t = np.array([r["metrics"]["time_s"] for r in fisher])
    assert cells["Time (s)"] == f"{np.median(t):.2f}"
    assert cells["Speed-up vs gold"] == f"{np.median([9.0, 10.0]):.2f}×"
    gold = _md_table_row(md, SECTION_TITLES["metrics"], "gold (retrain)")
    assert gold["Speed-up vs gold"] == "1.00× (ref.)"
    orig = [r for r in rows if r["scenario"] == "demo" and r["step"] == "original"]
    og = np.array([r["metrics"]["avg_gap"] for r in orig])
    assert _md_table_row(md, SECTION_TITLES["metrics"], "original")["Avg. Gap ↓"] == (
        f"{og.mean():.2f} ± {og.std(ddof=1):.2f}"
    )
    assert f"original's gap is {og.mean():.2f}" in md
    # prevalence table: fraction with r > 1 per τ
    f1 = np.array([r["metrics"]["r_tau@0.1/frac_gt1"] for r in fisher])
    prev = _md_table_row(md, SECTION_TITLES["prevalence"], "fisher")
    assert prev["τ = 0.1"] == f"{f1.mean():.3f} ± {f1.std(ddof=1):.3f}"
    # contamination: per-class accuracy minus gold's, means over seeds
    gold_rows = [r for r in rows if r["scenario"] == "demo" and r["step"] == "gold"]
    d = np.mean([r["metrics"]["per_class/test"]["one"] for r in fisher]) - np.mean(
        [r["metrics"]["per_class/test"]["one"] for r in gold_rows]
    )
    assert _md_table_row(md, SECTION_TITLES["contamination"], "fisher")["one"] == f"{d:+.2f}"
    # healing: before / after / delta
    heal = _md_table_row(md, SECTION_TITLES["healing"], "fisher")
    after = np.array([r["metrics"]["acc/test"] for r in rows if r["step"] == "heal"])
    assert (heal["Pool"], heal["Similarity"], heal["Epochs"]) == ("twins", "feature_cosine", "1")
    assert heal["Test after"] == f"{after.mean():.2f} ± {after.std(ddof=1):.2f}"
    assert heal["Δ test"] == f"{after.mean() - test.mean():+.2f}"


def test_matched_forgetting_note_counts_seeds_and_steps(report):
    _, paths, _ = report
    md = paths.markdown.read_text()
    assert "Matched forgetting" in md and "(6.50 %)" in md
    assert "rurk 1/2 seeds, median 106 steps" in md
    assert "fisher 0/" not in md  # fisher ran without a stopping rule


def test_images_are_valid_pngs_and_deterministic(report, tmp_path):
    rows, paths, _ = report
    assert len(paths.images) >= 7
    for p in paths.images:
        data = p.read_bytes()
        assert data.startswith(PNG_MAGIC)
        img = imread(p)
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
        assert float(img[..., :3].std()) > 0.02, p.name  # not a blank canvas
    again = build_report(rows, make_rows()[1], tmp_path, title="tiny report", generated="")
    assert [p.name for p in again.images] == [p.name for p in paths.images]
    for a, b in zip(again.images, paths.images, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name
    assert again.markdown.read_text() == paths.markdown.read_text()
    assert again.html.read_text() == paths.html.read_text()


def test_missing_sections_are_omitted(tmp_path):
    rows, _ = make_rows()
    rows = [r for r in rows if r["scenario"] == "demo" and r["step"] != "heal"]
    for r in rows:
        r["metrics"] = {k: v for k, v in r["metrics"].items() if not k.startswith("r_tau@")}
        del r["metrics"]["per_class/test"]
    paths = build_report(rows, [], tmp_path)
    md = paths.markdown.read_text()
    for key in ("healing", "ledger", "sequence", "residual", "prevalence", "contamination"):
        assert SECTION_TITLES[key] not in md, key
    for key in ("metrics", "accuracy", "cost"):
        assert SECTION_TITLES[key] in md, key
    assert md.splitlines()[2].startswith("generated ")  # the one timestamp line


def test_aggregate_partial_skips_and_rejects_garbage():
    s = aggregate([1.0, "skipped: no hits", 3.0])
    assert (s.mean, s.std, s.n, s.total, s.reasons) == (
        2.0,
        np.std([1, 3], ddof=1),
        2,
        3,
        ("no hits",),
    )
    with pytest.raises(DataFormatError, match="fisher"):
        aggregate([1.0, "oops"], "fisher: metric 'ua'")


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda r: r.pop("seed"), r"result row 0 .*lacks key\(s\) seed"),
        (lambda r: r.update(step="finetune"), "step 'finetune' is not one of"),
        (lambda r: r.update(seed="0"), "seed must be an integer"),
        (lambda r: r["metrics"].update(ua=[1, 2]), "metric 'ua'"),
    ],
)
def test_bad_rows_raise_naming_the_problem(tmp_path, mutate, match):
    rows, ledger = make_rows()
    mutate(rows[0])
    with pytest.raises(DataFormatError, match=match):
        build_report(rows, ledger, tmp_path)


def test_duplicate_rows_and_bad_ledger_are_rejected(tmp_path):
    rows, ledger = make_rows()
    with pytest.raises(DataFormatError, match="duplicates: scenario 'demo'"):
        build_report(rows + [rows[2]], ledger, tmp_path)
    with pytest.raises(DataFormatError, match=r"ledger entry 1 lacks key\(s\) step_index"):
        build_report(rows, [ledger[0], {k: v for k, v in ledger[1].items() if k != "step_index"}],
                     tmp_path)  # fmt: skip
    with pytest.raises(DataFormatError, match="no result rows"):
        build_report([], [], tmp_path)


def test_report_from_store_reads_rows_and_ledger(tmp_path):
    from obliviate.scenarios.store import ResultsStore

    rows, ledger = make_rows()
    db = tmp_path / "results.db"
    with pytest.raises(ConfigError, match="does not exist"):
        report_from_store(db, tmp_path / "out")
    with ResultsStore(db) as store:
        for r in rows:
            store.put_row(r)
        for e in ledger:
            store.put_ledger(e)
    paths = report_from_store(db, tmp_path / "out", scenario="seq")
    md = paths.markdown.read_text()
    assert "Scenario: seq" in md and "Scenario: demo" not in md
    assert SECTION_TITLES["ledger"] in md and "results.db" in md
    assert "| 0 | 1 | fisher | 000000000000 | 10 | attack:adversarial |" in md
    seq = [r for r in rows if r["scenario"] == "seq"]
    direct = build_report(seq, ledger, tmp_path / "direct", title="obliviate report: results.db")
    drop = lambda text: [ln for ln in text.splitlines() if not ln.startswith("generated ")]  # noqa: E731
    assert drop(md) == drop(direct.markdown.read_text())  # the store round-trips every row
    with pytest.raises(ConfigError, match="holds no rows for scenario 'nope'"):
        report_from_store(db, tmp_path / "out", scenario="nope")


def _screenshot_module():
    from obliviate.scenarios import screenshot

    return screenshot


def test_screenshot_raises_clearly_without_chromium(tmp_path, report):
    mod = _screenshot_module()
    with pytest.raises(mod.ChromiumNotFoundError, match="no-such-browser"):
        mod.screenshot(report[1].html, tmp_path / "x.png", browser="no-such-browser")


@pytest.mark.skipif(
    not any(shutil.which(b) for b in ("chromium", "chromium-browser")),
    reason="chromium is not installed",
)
def test_screenshot_of_the_report_is_not_blank(report, tmp_path):
    mod = _screenshot_module()
    png = mod.screenshot(report[1].html, tmp_path / "shot.png", height=2400)
    assert png.read_bytes().startswith(PNG_MAGIC)
    img = imread(png)[..., :3]
    assert img.shape[:2] == (2400, 1280)
    assert float(img.std()) > 0.05  # text, tables and figures, not an empty page
    assert float(img.mean(axis=(0, 1)).min()) < 0.97


# --------------------------------------------------------------------------- issue 15


def test_overview_names_the_seeds(tmp_path):
    rows, _ = make_rows()
    md = build_report(rows, [], tmp_path / "two", generated="").markdown.read_text()
    assert _md_table_row(md, SECTION_TITLES["overview"], "demo")["Seeds"] == "seeds 0, 1"
    assert _md_table_row(md, SECTION_TITLES["overview"], "seq")["Seeds"] == "seed 0"
    one = [r for r in rows if r["seed"] == 0]
    md = build_report(one, [], tmp_path / "one", generated="").markdown.read_text()
    assert _md_table_row(md, SECTION_TITLES["overview"], "demo")["Seeds"] == "seed 0"


def _store_with_rows(db: Path) -> None:
    from obliviate.scenarios.store import ResultsStore

    rows, ledger = make_rows()
    with ResultsStore(db) as store:
        for r in rows:
            store.put_row(r)
        for e in ledger:
            store.put_ledger(e)


def test_report_opens_the_store_read_only_and_leaves_it_unchanged(tmp_path):
    from obliviate.scenarios.store import ResultsStore

    db = tmp_path / "results.db"
    _store_with_rows(db)
    before = (db.read_bytes(), db.stat().st_mtime_ns)
    paths = report_from_store(db, tmp_path / "out")
    assert "Scenario: demo" in paths.markdown.read_text()
    assert (db.read_bytes(), db.stat().st_mtime_ns) == before
    with ResultsStore(db, read_only=True) as store:
        assert store.rows("seq")
        with pytest.raises(ConfigError, match="read-only"):
            store.put_row(make_rows()[0][0])
    assert (db.read_bytes(), db.stat().st_mtime_ns) == before


def test_report_refuses_a_file_that_is_not_a_store_without_touching_it(tmp_path):
    bogus = tmp_path / "notes.db"
    bogus.write_text("shopping list\n")
    before = (bogus.read_bytes(), bogus.stat().st_mtime_ns)
    with pytest.raises(ConfigError, match=r"notes\.db.* is not an SQLite database"):
        report_from_store(bogus, tmp_path / "out")
    assert (bogus.read_bytes(), bogus.stat().st_mtime_ns) == before


def test_summary_table_prints_full_method_names_to_a_pipe():
    import io

    from rich.console import Console

    from obliviate.report.console import print_table
    from obliviate.scenarios.store import summarize, summary_table

    rows, _ = make_rows()
    demo = [r for r in rows if r["scenario"] == "demo"]
    console = Console(file=io.StringIO(), width=80)  # what `make demo > log` gets
    assert not console.is_terminal
    print_table(console, summary_table(summarize(demo)))
    out = console.file.getvalue()
    for name in ("original", "gold", "fisher", "rurk", "fisher + heal twins/feature_cosine/e1"):
        assert name in out, out
    assert "…" not in out
    assert console.width == 80  # the console is left as it was
