"""Result filtering (threshold, EMA, N-of-M vote, hysteresis, publish policy) and the sequence number."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.config import ResultsConfig
from edge.daemon.results import ResultFilter
from edge.daemon.sequence import RecordSequence

LABELS = tuple(f"class{i}" for i in range(6))
# The mechanics of each step, frame by frame: no smoothing and a record per frame unless a test sets them.
PLAIN = {"smoothing": "none", "publish": "every"}


def scores(*pairs: tuple[int, float]) -> np.ndarray:
    s = np.zeros(len(LABELS), np.float32)
    for i, v in pairs:
        s[i] = v
    return s


def top1(f: ResultFilter, s: np.ndarray, now: float = 0.0) -> int | None:
    out = f.update(s, now)
    assert out is not None
    return out.top_k[0].class_index if out.top_k else None


def test_unsmoothed_results_are_plain_top_k_with_ties_to_the_lower_index() -> None:
    f = ResultFilter(ResultsConfig(top_k=3, **PLAIN), LABELS)
    out = f.update(scores((4, 0.5), (2, 0.5), (1, 0.25)), 0.0)
    assert out is not None and [p.class_index for p in out.top_k] == [2, 4, 1]
    assert out.top_k[0].label == "class2" and out.top_k[0].score == 0.5
    assert out.answer == "class2" and out.groups == ()  # no groups: the answer is the stable label


def test_threshold_drops_weak_classes() -> None:
    f = ResultFilter(ResultsConfig(top_k=3, threshold=0.3, **PLAIN), LABELS)
    first = f.update(scores((1, 0.6), (2, 0.2)), 0.0)
    assert first is not None and [p.class_index for p in first.top_k] == [1]
    weak = f.update(scores((1, 0.1)), 1.0)
    assert weak is not None and weak.top_k == () and weak.answer == "none"


def test_ema_smooths_a_single_outlier_frame() -> None:
    f = ResultFilter(ResultsConfig(top_k=2, smoothing="ema", ema_alpha=0.3, publish="every"), LABELS)
    for _ in range(5):
        assert top1(f, scores((1, 0.8), (3, 0.1))) == 1
    assert top1(f, scores((3, 0.9), (1, 0.05))) == 1  # one frame is not enough to flip
    for _ in range(3):
        last = top1(f, scores((3, 0.9), (1, 0.05)))
    assert last == 3


def test_vote_needs_n_of_m() -> None:
    f = ResultFilter(ResultsConfig(top_k=1, smoothing="vote", vote_window=5, vote_min=3, publish="every"), LABELS)
    seq = [1, 1, 1, 2, 2, 1, 2, 2, 2]
    got = [top1(f, scores((c, 0.9))) for c in seq]
    # 2 gets its third vote in the last five at the 7th frame
    assert got == [1, 1, 1, 1, 1, 1, 2, 2, 2]


def test_hysteresis_stops_flapping_between_close_labels() -> None:
    f = ResultFilter(ResultsConfig(top_k=2, hysteresis=0.1, **PLAIN), LABELS)
    assert top1(f, scores((1, 0.45), (2, 0.40))) == 1
    assert top1(f, scores((2, 0.47), (1, 0.43))) == 1  # better, but not by the margin
    out = f.update(scores((2, 0.47), (1, 0.43)), 0.0)
    assert out is not None and [p.class_index for p in out.top_k] == [1, 2]  # stable label first
    assert top1(f, scores((2, 0.60), (1, 0.30))) == 2


def test_publish_on_change_with_heartbeat() -> None:
    f = ResultFilter(ResultsConfig(publish="change", heartbeat_s=10.0, smoothing="none"), LABELS)
    assert f.update(scores((1, 0.9)), 0.0) is not None
    assert f.update(scores((1, 0.8)), 1.0) is None
    assert f.update(scores((2, 0.9)), 2.0) is not None
    assert f.update(scores((2, 0.9)), 11.0) is None
    assert f.update(scores((2, 0.9)), 12.5) is not None  # heartbeat: 10 s since the last record


def test_the_defaults_publish_a_flickering_top1_once_and_then_the_heartbeat() -> None:
    """An operator's defaults: a vote over the last frames and a record on a change of the voted
    label or after heartbeat_s, so a top-1 that flickers on camera noise is not a record per frame."""
    f = ResultFilter(ResultsConfig(), LABELS)
    cfg = f.config
    assert (cfg.smoothing, cfg.vote_window, cfg.vote_min, cfg.publish, cfg.heartbeat_s) == ("vote", 10, 7, "change", 60.0)
    flicker = [1, 2, 1, 2, 2, 1, 2, 1, 1, 2] * 50  # 500 frames at 10 fps: 50 s of two labels, half and half
    published = [i for i, c in enumerate(flicker) if f.update(scores((c, 0.5), (3 - c, 0.4)), i / 10) is not None]
    assert published == [0]
    assert f.update(scores((1, 0.5)), 60.0) is not None  # the heartbeat
    got = [f.update(scores((4, 0.9)), 60.1 + i / 10) for i in range(8)]
    assert [i for i, out in enumerate(got) if out is not None] == [6]  # a real change: its seventh vote, 0.7 s
    assert got[6] is not None and got[6].top_k[0].class_index == 4


def test_publish_at_most_every_interval() -> None:
    f = ResultFilter(ResultsConfig(publish="interval", interval_s=1.0, heartbeat_s=0.0, smoothing="none"), LABELS)
    published = [t for t in np.arange(0, 3.01, 0.25) if f.update(scores((1, 0.9)), float(t)) is not None]
    assert published == [0.0, 1.0, 2.0, 3.0]


def test_sequence_is_persisted_and_survives_a_crash(tmp_path: Path) -> None:
    a = RecordSequence(tmp_path, block=10)
    assert [a.next() for _ in range(3)] == [0, 1, 2]
    assert (tmp_path / "seq").read_text() == "10\n"  # the reserved block, written before use
    a.close()
    b = RecordSequence(tmp_path, block=10)
    assert b.next() == 3  # clean restart: no gap
    for _ in range(12):
        last = b.next()
    # crash (no close): the kernel drops the state_dir lock and nothing else is persisted; the next
    # run starts at the persisted high-water mark, beyond all used
    b._release()
    c = RecordSequence(tmp_path, block=10)
    first = c.next()
    assert first > last and first == int((tmp_path / "seq").read_text()) - 10


def test_a_stable_label_under_the_threshold_publishes_no_label_rather_than_a_runner_up() -> None:
    from edge.config import ResultsConfig
    from edge.daemon.results import ResultFilter

    labels = tuple(str(i) for i in range(1001))
    f = ResultFilter(ResultsConfig(hysteresis=0.2, threshold=0.4, **PLAIN), labels)
    first = np.zeros(1001, np.float32)
    first[1] = 0.6
    assert [p.class_index for p in f.predictions(first)][:1] == [1]
    # class 2 now leads, but not by the hysteresis margin: 1 stays the stable label, and it
    # is under the threshold, so nothing is published as top_k[0] (never class 2 in its place)
    second = np.zeros(1001, np.float32)
    second[1], second[2] = 0.35, 0.45
    assert f.predictions(second) == ()


# Groups: the answer is the stable group among the configured ones and `other`.
def group_filter(config: ResultsConfig) -> ResultFilter:
    from edge.model.groups import Group, GroupScorer

    groups = (Group("ab", "", (1, 2)), Group("c", "", (3,)))
    return ResultFilter(config, LABELS, GroupScorer(groups, len(LABELS)))


def test_group_scores_are_sums_best_first_with_other_for_the_rest() -> None:
    f = group_filter(ResultsConfig())
    out = f.update(scores((1, 0.25), (2, 0.25), (3, 0.375), (5, 0.125)), 0.0)
    assert out is not None and out.answer == "ab"
    assert [(g.name, g.score) for g in out.groups] == [("ab", 0.5), ("c", 0.375), ("other", 0.125)]
    assert out.top_k[0].class_index == 3  # top_k is still the classes'


def test_group_answer_none_under_the_threshold_and_other_can_win() -> None:
    f = group_filter(ResultsConfig(threshold=0.5))
    weak = f.update(scores((1, 0.2), (3, 0.3), (0, 0.25), (5, 0.25)), 0.0)
    assert weak is not None and weak.answer == "other"  # 0.25 + 0.25 uncovered beats both groups
    none = f.update(scores((1, 0.3), (3, 0.3), (0, 0.2), (5, 0.2)), 1.0)
    assert none is not None and none.answer == "none" and none.groups[0].name == "other"


def test_group_answer_has_hysteresis_and_vote_like_labels() -> None:
    f = group_filter(ResultsConfig(hysteresis=0.2, **PLAIN))
    assert_answers(f, [((1, 0.6), (3, 0.4)), ((1, 0.45), (3, 0.55)), ((1, 0.3), (3, 0.7))], ["ab", "ab", "c"])
    v = group_filter(ResultsConfig(smoothing="vote", vote_window=3, vote_min=2, publish="every"))
    assert_answers(v, [((1, 0.9),), ((3, 0.9),), ((1, 0.9),), ((3, 0.9),), ((3, 0.9),)], ["ab", "ab", "ab", "c", "c"])


def test_group_ema_smooths_the_group_scores() -> None:
    f = group_filter(ResultsConfig(smoothing="ema", ema_alpha=0.3, publish="every"))
    # ab/c: 0.8/0.2, then 0.59/0.41 (one contrary frame is not enough), then 0.443/0.557
    assert_answers(f, [((1, 0.8), (3, 0.2)), ((3, 0.9), (1, 0.1)), ((3, 0.9), (1, 0.1))], ["ab", "ab", "c"])


def test_publish_on_change_follows_the_answer_not_the_label() -> None:
    f = group_filter(ResultsConfig(publish="change", heartbeat_s=0.0, smoothing="none"))
    assert f.update(scores((1, 0.9)), 0.0) is not None
    assert f.update(scores((2, 0.9)), 1.0) is None  # another class of the same group: same answer
    changed = f.update(scores((3, 0.9)), 2.0)
    assert changed is not None and changed.answer == "c"


def assert_answers(f: ResultFilter, frames: list[tuple[tuple[int, float], ...]], expected: list[str]) -> None:
    got = []
    for i, pairs in enumerate(frames):
        out = f.update(scores(*pairs), float(i))
        assert out is not None
        got.append(out.answer)
    assert got == expected
