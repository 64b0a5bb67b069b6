"""Label groups: pinned built-in membership, user groups and their errors, scoring, classify and eval --groups."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge import paths
from edge.config import ConfigError, parse
from edge.convert.manifest import read_labels
from edge.model.groups import GroupScorer, all_specs, builtin_specs, configured, resolve
from edge.paths import REPO_ROOT
from tests.support.daemon import EXE

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

MINIMAL = {"sinks": {"stdout": {"enabled": True}}}

# Class count and the first 16 hex digits of sha256(",".join(sorted indices)): any change to a
# built-in group's membership must change this table (and docs/guide/groups.md) on purpose.
PINNED = {
    "bird": (59, "e8c88295183ab117"),
    "dog": (118, "d3e80be200a41d92"),
    "cat": (5, "b0c590de6dcb7e5f"),
    "animal": (398, "20cd1e46165a87cc"),
    "vehicle": (66, "4afa057edd5484a7"),
    "food": (45, "2aeb595b56736a8f"),
}


def test_builtin_membership_is_pinned() -> None:
    specs = builtin_specs()
    assert set(specs) == set(PINNED)
    for name, (count, digest) in PINNED.items():
        classes = resolve(specs, name).classes
        assert (len(classes), hashlib.sha256(",".join(map(str, classes)).encode()).hexdigest()[:16]) == (count, digest), name


@pytest.mark.parametrize(
    ("group", "index", "synset", "label"),
    [
        ("bird", 8, "n01514668", "cock"),
        ("bird", 25, "n01622779", "great grey owl"),
        ("bird", 89, "n01818515", "macaw"),
        ("bird", 147, "n02058221", "albatross"),
        ("dog", 152, "n02085620", "Chihuahua"),
        ("dog", 269, "n02113978", "Mexican hairless"),
        ("cat", 282, "n02123045", "tabby"),
        ("cat", 286, "n02124075", "Egyptian cat"),
        ("animal", 1, "n01440764", "tench"),
        ("animal", 398, "n02655020", "puffer"),
        ("vehicle", 818, "n04285008", "sports car"),
        ("vehicle", 405, "n02690373", "airliner"),
        ("food", 935, "n07697537", "hotdog"),
        ("food", 954, "n07753275", "pineapple"),
    ],
)
def test_spot_checks_against_the_labels_and_synsets(group: str, index: int, synset: str, label: str, shared: Path) -> None:
    labels = read_labels(paths.labels_file())
    synsets = (shared / "data" / "synsets.txt").read_text().split()  # 1000 lines: index 1..1000 (0 = background)
    assert labels[index].split(",")[0] == label and synsets[index - 1] == synset
    assert index in resolve(builtin_specs(), group).classes


@pytest.mark.parametrize(
    ("group", "outside"),
    [("bird", (7, 26, 80, 102, 127, 148)), ("dog", (151, 270, 271)), ("cat", (281, 287, 292)), ("animal", (0, 399)), ("food", (959, 969))],
)
def test_group_edges(group: str, outside: tuple[int, ...]) -> None:
    classes = set(resolve(builtin_specs(), group).classes)
    assert not classes & set(outside)


def test_docs_list_every_member() -> None:
    from edge.commands.groups import markdown

    docs = (REPO_ROOT / "docs" / "guide" / "groups.md").read_text()
    assert markdown(read_labels(paths.labels_file())) in docs, "regenerate: mnv1-edge groups --markdown (into docs/guide/groups.md)"


def test_groups_json_ships_as_package_data() -> None:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert "groups.json" in pyproject["tool"]["setuptools"]["package-data"]["edge.model"]


def test_user_groups_take_indices_ranges_and_names() -> None:
    config = parse(
        {**MINIMAL, "groups": {"feeder": ["bird", "336", 331, "337-338"], "pets": ["dog", "cat"]}, "results": {"groups": ["feeder", "pets"]}}
    )
    feeder, pets = configured(config.groups, config.results.groups, 1001)
    assert set(feeder.classes) == set(resolve(builtin_specs(), "bird").classes) | {331, 336, 337, 338}
    assert len(pets.classes) == 123


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"groups": {"x": []}}, "groups.x: empty group"),
        ({"groups": {"x": ["y"], "y": ["x"]}}, r"groups.x: group 'x' names itself \(x -> y -> x\)"),
        ({"groups": {"x": ["x", 3]}}, r"groups.x: group 'x' names itself \(x -> x\)"),
        ({"groups": {"x": [1001]}}, r"groups.x\[0\]: class index 1001 out of range 0-1000"),
        ({"groups": {"x": [5, "9-1200"]}}, r"groups.x\[1\]: class index 1200 out of range"),
        ({"groups": {"x": ["20-10"]}}, r"groups.x\[0\]: range '20-10' runs backwards"),
        ({"groups": {"x": ["birds"]}}, r"groups.x\[0\]: unknown group 'birds'"),
        ({"groups": {"x": [1.5]}}, r"groups.x\[0\]: expected an integer or a string, got a number 1.5"),
        ({"groups": {"x": [True]}}, r"groups.x\[0\]: expected an integer or a string"),
        ({"groups": {"x": 3}}, "groups.x: expected a list"),
        ({"groups": 3}, "groups: expected a table"),
        ({"groups": {"other": [1]}}, "groups.other: a group name is"),
        ({"groups": {"Big Cats": [1]}}, "groups.Big Cats: a group name is"),
        ({"results": {"groups": ["bird", "unicorn"]}}, r"results.groups\[1\]: unknown group 'unicorn'"),
        ({"results": {"groups": ["bird", "bird"]}}, r"results.groups\[1\]: 'bird' is listed twice"),
    ],
)
def test_bad_groups_name_the_key(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse({**MINIMAL, **data})


def test_a_custom_model_with_fewer_classes_rejects_imagenet_groups() -> None:
    assert configured({"a": [0, 1]}, ("a",), 3)[0].classes == (0, 1)
    with pytest.raises(ConfigError, match=r"results.groups\[0\]: 'bird' does not fit this model's 3 classes"):
        configured({}, ("bird",), 3)


def test_scores_sum_classes_into_one_reused_buffer_and_other_is_the_rest() -> None:
    specs = all_specs({"ab": [1, 2], "c": [3]})
    scorer = GroupScorer((resolve(specs, "ab"), resolve(specs, "c"), resolve(specs, "c")), 6)
    probs = np.array([0.0, 0.25, 0.25, 0.375, 0.0, 0.0], np.float32)  # 0.125 lost to uint8 rounding
    first = scorer.scores(probs)
    assert first.tolist() == [0.5, 0.375, 0.375, 0.125]  # overlapping groups: `other` is what none covers
    assert scorer.scores(probs * 0) is first  # no allocation per frame
    assert scorer.scores_batch(probs[None]).tolist() == [[0.5, 0.375, 0.375, 0.125]]


@pytest.mark.slow
def test_classify_json_with_groups(converted_model: Path, shared: Path) -> None:
    images = [str(shared / "data" / "samples" / n) for n in ("parrot.jpg", "cat.bmp")]
    run = subprocess.run(
        [EXE, "classify", "--json", "--groups", "bird,cat", "--model", str(converted_model), *images], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    parrot, cat = map(json.loads, run.stdout.splitlines())
    assert parrot["top_k"][0]["label"] == "macaw" and parrot["answer"] == "bird" and cat["answer"] == "cat"
    assert [g["name"] for g in cat["groups"]] == ["cat", "other", "bird"] and abs(sum(g["score"] for g in cat["groups"]) - 1) < 1e-6
    every = subprocess.run(
        [EXE, "classify", "--json", "--groups", "--model", str(converted_model), images[0]], capture_output=True, text=True, timeout=60
    )
    assert sorted(g["name"] for g in json.loads(every.stdout)["groups"]) == sorted([*PINNED, "other"])
    bad = subprocess.run(
        [EXE, "classify", "--groups", "bird,unicorn", "--model", str(converted_model), images[0]], capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2 and "--groups: unknown group 'unicorn' in 'bird,unicorn'; the built-in groups are" in bad.stderr


def test_eval_groups_side_by_side(tmp_path: Path, converted_model: Path, reference_model: Path, shared: Path) -> None:
    folder = tmp_path / "labelled"
    folder.mkdir()
    rows = [("parrot.jpg", 89), ("bird.bmp", 20), ("cat.bmp", 286), ("grace_hopper.bmp", 653)]
    with open(folder / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "synset", "class_index", "class_name"])
        for name, index in rows:
            shutil.copy(shared / "data" / "samples" / name, folder / name)
            w.writerow([name, "n0", index, "x"])
    out = tmp_path / "eval.json"
    cmd = [
        EXE,
        "eval",
        str(converted_model),
        str(reference_model),
        "--images",
        str(folder),
        "--rounds",
        "0",
        "--groups",
        "bird,cat",
        "--json",
        str(out),
    ]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "3-way accuracy" in run.stdout and "bird P/R (n=2)" in run.stdout
    ours = json.loads(out.read_text())["groups"][0][0]
    assert ours["images"] == 4 and ours["accuracy"] == 100.0
    assert [(g["name"], g["images"], g["precision"], g["recall"]) for g in ours["groups"]] == [
        ("bird", 2, 100.0, 100.0),
        ("cat", 1, 100.0, 100.0),
        ("other", 1, 100.0, 100.0),
    ]


def test_the_daemon_passes_the_answers_to_the_sinks(tmp_path: Path, converted_model: Path) -> None:
    from edge.daemon.pipeline import FramePipeline
    from edge.daemon.sequence import RecordSequence

    seq = RecordSequence(tmp_path)
    base = {"model": {"path": str(converted_model), "self_test": False}, "sinks": {"stdout": {"enabled": True}}}
    try:
        assert FramePipeline(parse({**base, "results": {"groups": ["bird", "dog"]}}), seq).answers == ("bird", "dog")
        assert FramePipeline(parse(base), seq).answers == ()  # ImageNet's 1001 labels: no per-answer sensors
    finally:
        seq.close()
