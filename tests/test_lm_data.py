"""tofu_synth (deterministic fictitious people, parts, requests) and the users' QA JSONL format."""

from __future__ import annotations

import json
import re

import pytest

from obliviate.data.qa import QADataset, QAPair, read_qa_jsonl, write_qa_jsonl
from obliviate.data.tofu_synth import ATTRIBUTES, QUESTIONS_PER_PERSON, tofu_synth
from obliviate.errors import ConfigError, DataFormatError, RequestError


@pytest.fixture(scope="module")
def ds() -> QADataset:
    return tofu_synth(seed=0, n_trained=12, n_holdout=3, n_reserve=3)


def test_same_seed_gives_identical_dataset_and_other_seed_differs(ds):
    again = tofu_synth(seed=0, n_trained=12, n_holdout=3, n_reserve=3)
    assert again == ds
    assert [p.to_json() for p in again.pairs] == [p.to_json() for p in ds.pairs]
    other = tofu_synth(seed=1, n_trained=12, n_holdout=3, n_reserve=3)
    assert {p.group for p in other.pairs}.isdisjoint({p.group for p in ds.pairs})


def test_people_depend_only_on_seed_and_index(ds):
    bigger = tofu_synth(seed=0, n_trained=20, n_holdout=5, n_reserve=5)
    assert bigger.pairs[: len(ds)] == ds.pairs


def test_structure_ids_and_answers(ds):
    assert QUESTIONS_PER_PERSON == len(ATTRIBUTES) == 10
    assert len(ds) == 18 * 10
    assert len(set(ds.ids)) == len(ds)
    assert all(re.fullmatch(r"tofu-s0-p\d{4}-q\d{2}", i) for i in ds.ids)
    assert ds.pairs[13].id == "tofu-s0-p0001-q03"
    names = ds.groups
    assert len(names) == len(set(names)) == 18
    for p in ds.pairs:
        assert p.group in p.question
        assert p.key_fact.lower() in p.answer.lower()
        assert p.key_fact.lower() in (p.paraphrased_answer or "").lower()
        assert p.paraphrased_answer != p.answer
        assert len(p.perturbed_answers) >= 3
        assert len(set(p.perturbed_answers)) == len(p.perturbed_answers)
        assert all(p.key_fact not in w for w in p.perturbed_answers)
        assert len(p.alt_questions) >= 2 and p.question not in p.alt_questions
    # several phrasings are actually used across people
    first_q = {p.question.replace(p.group, "NAME") for p in ds.pairs if p.id.endswith("q00")}
    assert len(first_q) >= 2


def test_parts_are_disjoint_and_sized(ds):
    assert {k: len(v) for k, v in ds.parts.items()} == {"trained": 12, "holdout": 3, "reserve": 3}
    all_names = [n for v in ds.parts.values() for n in v]
    assert len(all_names) == len(set(all_names)) == 18
    assert len(ds.pairs_of("holdout")) == 30
    with pytest.raises(RequestError, match="no part 'test'"):
        ds.pairs_of("test")


def test_requests_by_people_and_ids(ds):
    alice = ds.parts["trained"][0]
    ids = ds.request(groups=[alice])
    assert len(ids) == 10 and all(ds.select(ids)[i].group == alice for i in range(10))
    one = ds.pairs_of("trained")[15].id
    mixed = ds.request(ids=[one, ids[0]], groups=[alice])
    assert mixed == tuple(sorted(set(ids) | {one}, key=ds.ids.index))
    assert ds.index_of([one]) == [15]


def test_bad_requests_name_the_offenders(ds):
    holdout = ds.parts["holdout"][0]
    with pytest.raises(RequestError, match="empty"):
        ds.request()
    with pytest.raises(RequestError, match=rf"holdout.*{holdout}"):
        ds.request(groups=[holdout])
    reserve_id = ds.pairs_of("reserve")[0].id
    with pytest.raises(RequestError, match=rf"reserve.*{reserve_id}"):
        ds.request(ids=[reserve_id])
    with pytest.raises(RequestError, match="unknown people/groups: \\['Nobody Atall'\\]"):
        ds.request(groups=["Nobody Atall"])
    with pytest.raises(RequestError, match="unknown QA ids: \\['tofu-s0-p9999-q00'\\]"):
        ds.request(ids=["tofu-s0-p9999-q00"])
    with pytest.raises(RequestError, match="unknown QA ids"):
        ds.select(["nope"])


def test_generator_arguments_are_checked():
    with pytest.raises(ConfigError, match="n_perturbed"):
        tofu_synth(n_perturbed=2)
    with pytest.raises(ConfigError, match="n_trained"):
        tofu_synth(n_trained=0)


def test_jsonl_round_trip(tmp_path, ds):
    path = write_qa_jsonl(ds.pairs[:12], tmp_path / "qa.jsonl")
    back = read_qa_jsonl(path)
    assert back.pairs == ds.pairs[:12]
    assert back.name == "qa"
    assert back.request(groups=[ds.pairs[0].group]) == ds.ids[:10]


def test_jsonl_minimal_pairs_form_their_own_groups(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text(
        '{"id": "a", "question": "Q1?", "answer": "A1."}\n\n'
        '{"id": "b", "question": "Q2?", "answer": "A2.", "group": "g"}\n'
    )
    d = read_qa_jsonl(path)
    assert d.groups == ("a", "g")
    assert d.pairs[0].fact == "A1."
    assert d.request(groups=["g"]) == ("b",)


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"id": "x", "question": "Q?"}', "'answer' must be a non-empty string"),
        ('{"id": "x", "question": "Q?", "answer": ""}', "'answer' must be a non-empty string"),
        ('{"id": 3, "question": "Q?", "answer": "A"}', "'id' must be a non-empty string"),
        ('{"id": "x", "question": "Q?", "answer": "A", "perturbed_answers": "B"}', "list"),
        ('{"id": "x", "question": "Q?", "answer": "A", "colour": "red"}', "unknown fields"),
        ('{"id": "a", "question": "Q?", "answer": "A"}', "duplicate id 'a' \\(first on line 1"),
    ],
)
def test_malformed_jsonl_line_names_file_and_line(tmp_path, line, match):
    path = tmp_path / "bad.jsonl"
    good = json.dumps({"id": "a", "question": "Q?", "answer": "A."})
    path.write_text(f"{good}\n{good.replace('a', 'b', 1)}\n{line}\n")
    with pytest.raises(DataFormatError, match=rf"bad\.jsonl:3: .*{match}"):
        read_qa_jsonl(path)


def test_missing_or_empty_jsonl(tmp_path):
    with pytest.raises(DataFormatError, match="does not exist"):
        read_qa_jsonl(tmp_path / "none.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataFormatError, match="no QA pairs"):
        read_qa_jsonl(tmp_path / "empty.jsonl")
    with pytest.raises(DataFormatError, match="duplicate QA ids"):
        QADataset("x", (QAPair("a", "q", "a"), QAPair("a", "q", "b")))
