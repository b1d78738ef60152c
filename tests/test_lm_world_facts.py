"""world_facts (the hand-written question list and its SmolLM2 filter output) and fortunes (Debian's
quotations: seeded subsample, stable ids, clear errors). Fast: no model is loaded."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from obliviate.data import fortunes as fortunes_mod
from obliviate.data.fortunes import DEFAULT_CATEGORIES, MAX_CHARS, MIN_CHARS, load_fortunes
from obliviate.data.texts import TextDataset, TextItem, read_text_jsonl, write_text_jsonl
from obliviate.data.world_facts import KNOWN_SMOLLM2, QUESTIONS, TOPICS, load_world_facts
from obliviate.errors import ConfigError, DataFormatError, DatasetNotInstalledError, RequestError


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w]+", " ", text.lower()).split())


# ------------------------------------------------------------------------------------------------
# world_facts


@pytest.fixture(scope="module")
def facts():
    return load_world_facts(filtered=False)


def test_every_line_parses_with_the_expected_fields():
    lines = [ln for ln in QUESTIONS.read_text(encoding="utf-8").splitlines() if ln.strip()]
    allowed = {"id", "question", "answer", "perturbed_answers", "group", "key_fact"}
    for ln in lines:
        obj = json.loads(ln)
        assert {"id", "question", "answer", "perturbed_answers", "group"} <= set(obj) <= allowed


def test_size_topics_and_unique_ids(facts):
    assert len(facts) >= 300
    counts = Counter(p.group for p in facts.pairs)
    assert set(counts) == set(TOPICS) and len(TOPICS) >= 8
    assert min(counts.values()) >= 25, counts
    assert len(set(facts.ids)) == len(facts)
    assert all(re.fullmatch(r"wf-[a-z]+-\d{2}", i) for i in facts.ids)
    assert len({_norm(p.question) for p in facts.pairs}) == len(facts)  # no repeated question


def test_wrong_options_are_distinct_and_never_the_answer(facts):
    for p in facts.pairs:
        wrong = [_norm(w) for w in p.perturbed_answers]
        assert len(set(wrong)) == len(wrong) >= 3, p.id
        assert _norm(p.answer) not in wrong, p.id
        # a wrong option that contained the key fact would count as a correct answer
        assert not any(f" {_norm(p.fact)} " in f" {w} " for w in wrong), p.id
        assert f" {_norm(p.fact)} " in f" {_norm(p.answer)} ", p.id  # the key fact is the answer's


def test_filtered_set_is_a_subset_and_matches_the_checked_in_file(facts):
    known = json.loads(KNOWN_SMOLLM2.read_text(encoding="utf-8"))
    for key in ("model", "command", "date", "known_ids", "per_topic"):
        assert key in known
    assert "obliviate.metrics.known_facts" in known["command"]
    sub = load_world_facts()
    assert 0 < len(sub) <= len(facts)
    assert set(sub.ids) <= set(facts.ids)
    assert list(sub.ids) == [i for i in facts.ids if i in set(known["known_ids"])]
    assert sum(k for k, _ in known["per_topic"].values()) == len(sub)
    assert sub.pairs == tuple(p for p in facts.pairs if p.id in set(sub.ids))


def test_known_file_naming_foreign_ids_or_missing_is_a_clear_error(tmp_path):
    bad = tmp_path / "known.json"
    bad.write_text(json.dumps({"known_ids": ["wf-geography-01", "nope-1"]}))
    with pytest.raises(DataFormatError, match="nope-1"):
        load_world_facts(known=bad)
    with pytest.raises(DataFormatError, match="does not exist"):
        load_world_facts(known=tmp_path / "absent.json")
    bad.write_text(json.dumps({"known_ids": "wf-geography-01"}))
    with pytest.raises(DataFormatError, match="known_ids"):
        load_world_facts(known=bad)


# ------------------------------------------------------------------------------------------------
# fortunes


def _have_fortunes() -> bool:
    try:
        fortunes_mod.fortunes_dir()
    except DatasetNotInstalledError:
        return False
    return True


needs_fortunes = pytest.mark.skipif(
    not _have_fortunes(),
    reason="Debian's fortunes package is not installed (apt-get install fortunes)",
)


@needs_fortunes
def test_fortunes_default_shape_groups_and_bounds():
    ds = load_fortunes()
    assert isinstance(ds, TextDataset) and len(ds) == 8 * 150
    assert ds.groups == DEFAULT_CATEGORIES
    assert Counter(t.group for t in ds.items) == dict.fromkeys(DEFAULT_CATEGORIES, 150)
    assert all(MIN_CHARS <= len(t.text) <= MAX_CHARS for t in ds.items)
    assert all(t.text == " ".join(t.text.split()) for t in ds.items)
    assert all(re.fullmatch(rf"fortune-{t.group}-\d{{4}}-[0-9a-f]{{8}}", t.id) for t in ds.items)


@needs_fortunes
def test_fortunes_are_deterministic_under_a_seed_and_ids_are_stable():
    a = load_fortunes(["science", "work"], per_category=20, seed=3)
    assert a == load_fortunes(["science", "work"], per_category=20, seed=3)
    assert a.ids != load_fortunes(["science", "work"], per_category=20, seed=4).ids
    # a category's draw does not depend on the other categories asked for
    alone = load_fortunes(["work"], per_category=20, seed=3)
    assert alone.items == a.of_group("work")
    # an id names the same text whatever the subsample
    everything = {t.id: t.text for t in load_fortunes(["science", "work"], per_category=None).items}
    assert all(everything[t.id] == t.text for t in a.items)


@needs_fortunes
def test_fortunes_categories_as_asked_and_requests():
    ds = load_fortunes(["startrek", "computers"], per_category=5)
    assert ds.groups == ("startrek", "computers") and len(ds) == 10
    ids = ds.request(groups=["startrek"])
    assert len(ids) == 5 and all(i.startswith("fortune-startrek-") for i in ids)
    with pytest.raises(RequestError, match="empty"):
        ds.request()
    with pytest.raises(RequestError, match="nope"):
        ds.request(groups=["nope"])


@needs_fortunes
def test_fortunes_bad_arguments_are_clear_errors():
    with pytest.raises(ConfigError, match="no-such-category"):
        load_fortunes(["science", "no-such-category"])
    with pytest.raises(ConfigError, match="repeated"):
        load_fortunes(["science", "science"])
    with pytest.raises(ConfigError, match="fewer than per_category"):
        load_fortunes(["pratchett"], per_category=150)
    with pytest.raises(ConfigError, match="per_category"):
        load_fortunes(["science"], per_category=0)
    with pytest.raises(ConfigError, match="list of names"):
        load_fortunes("science")


def test_missing_fortunes_package_names_the_install(tmp_path, monkeypatch):
    monkeypatch.setenv("OBLIVIATE_FORTUNES_DIR", str(tmp_path / "absent"))
    with pytest.raises(DatasetNotInstalledError, match="apt-get install fortunes"):
        load_fortunes()


def test_fortunes_from_a_folder_of_quote_files(tmp_path):
    quote = "A long enough quotation that clears the lower bound of eighty characters, surely, yes."
    (tmp_path / "mine").write_text(f"short\n%\n{quote}\n\t\t-- Someone\n%\n{quote} Again.\n")
    (tmp_path / "mine.dat").write_bytes(b"\x00")
    ds = load_fortunes(["mine"], per_category=None, root=tmp_path)
    assert ds.texts == (f"{quote} -- Someone", f"{quote} Again.")
    assert [i.split("-")[2] for i in ds.ids] == [
        "0001",
        "0002",
    ]  # file positions, short one skipped


def test_text_jsonl_round_trip_and_malformed_lines(tmp_path):
    items = (TextItem("a", "first text", "g1"), TextItem("b", "second text", "g2"))
    path = write_text_jsonl(items, tmp_path / "t.jsonl")
    assert read_text_jsonl(path).items == items
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": "x"}\n{"id": "b"}\n')
    with pytest.raises(DataFormatError, match=r"bad.jsonl:2.*'text'"):
        read_text_jsonl(bad)
    bad.write_text('{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n')
    with pytest.raises(DataFormatError, match="duplicate id 'a'"):
        read_text_jsonl(bad)
    bad.write_text("{not json\n")
    with pytest.raises(DataFormatError, match="not valid JSON"):
        read_text_jsonl(bad)
    assert read_text_jsonl(_one(tmp_path)).items[0].group == "solo"  # default group = id


def _one(tmp_path):
    p = tmp_path / "one.jsonl"
    p.write_text('{"id": "solo", "text": "alone"}\n')
    return p
