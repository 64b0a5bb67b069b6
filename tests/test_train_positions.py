"""The per-position head: each class's best cell, a small subject found anywhere; a costly head only when it is worth its cost."""

from __future__ import annotations

import numpy as np
import pytest

from edge.train import head, heads
from edge.train.heads.positions import Positions, PositionsFit


def test_positions_logits_are_each_classes_best_cell() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 6, (5, 64, 8))
    h = PositionsFit(heads.get("positions"), rng.standard_normal((8, 3)).astype(np.float32), rng.standard_normal(3).astype(np.float32))
    per_cell = x @ h.kernel.astype(np.float64) + h.bias.astype(np.float64)
    assert np.array_equal(h.logits(x), per_cell.max(axis=1))


def test_fit_finds_a_signal_in_one_cell() -> None:
    """'present' frames carry a pattern in one random cell among 64 noisy ones: averaging the cells
    dilutes it 64-fold, scoring each cell does not. (Its fit's determinism: tests/test_train_heads.py.)"""
    rng = np.random.default_rng(1)
    n, d = 120, 16
    x = rng.uniform(0, 1, (n, 64, d))
    labels = np.arange(n) % 2
    x[labels == 1, rng.integers(0, 64, n // 2), 3] += 2.0
    fitted = heads.get("positions").fit(x[:80], labels[:80], 2, 1e-3)
    assert np.mean(np.argmax(fitted.logits(x[80:]), axis=1) == labels[80:]) >= 0.95


class Costly(Positions):
    """A per-position head on a finer map, as a head costing more per frame declares itself (scene-2x, change)."""

    name = "costly"
    preference = 0
    cost_margin = 1.0
    l2_grid = (1e-2,)


@pytest.mark.slow
def test_auto_takes_a_costly_head_only_when_it_cross_validates_more_than_a_point_better(monkeypatch: pytest.MonkeyPatch) -> None:
    """A head that costs several times the stock model per frame: a clear win takes it, a win by no more than its margin does not."""
    rng = np.random.default_rng(3)
    n, d = 80, 8
    labels = np.arange(n) % 2
    weak = rng.uniform(0, 1, (n, 64, d))
    weak[labels == 1, rng.integers(0, 64, n // 2), 3] += rng.uniform(0.0, 1.5, n // 2)  # some subjects too faint to find
    strong = rng.uniform(0, 1, (n, 256, d))
    strong[labels == 1, rng.integers(0, 256, n // 2), 3] += 2.0
    candidates = (heads.get("positions"), Costly())
    inputs = {"positions": weak, "costly": strong}
    cv = head.choose(inputs, labels, np.arange(n) % 4, 2, candidates).cv
    cheap = max(v for k, v in cv.items() if k.startswith("positions "))
    assert head.choose(inputs, labels, np.arange(n) % 4, 2, candidates).head.name == "costly" and cv["costly l2=0.01"] > cheap + 1.0
    monkeypatch.setattr(candidates[1], "cost_margin", cv["costly l2=0.01"] - cheap)  # a win by exactly the margin is not enough
    assert head.choose(inputs, labels, np.arange(n) % 4, 2, candidates).head.name == "positions"
    assert head.choose(inputs, labels, np.arange(n) % 4, 2, candidates, margins=False).head.name == "costly"  # few visits: no margins
