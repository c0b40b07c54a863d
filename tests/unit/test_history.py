"""ScoreHistory: growth, run marks, rolling mean and per-column downsampling against naive numpy."""

from __future__ import annotations

import numpy as np
import pytest

from cartpole_tui.tui.data.score_history import BLOCK, ScoreHistory


def naive_rolling(scores: np.ndarray, window: int) -> np.ndarray:
    scores = scores.astype(np.float64)
    return np.array([scores[max(0, i - window + 1) : i + 1].mean() for i in range(len(scores))])


def filled(scores, run_length: int = 20) -> ScoreHistory:
    history = ScoreHistory(capacity=1)
    for i, score in enumerate(scores):
        history.append(float(score), i // run_length)
    return history


@pytest.fixture
def scores() -> np.ndarray:
    return np.random.default_rng(7).integers(0, 501, 3000).astype(np.float32)


def test_append_grows_and_keeps_every_score(scores):
    history = filled(scores)
    assert len(history) == len(scores)
    np.testing.assert_array_equal(history.scores, scores)
    np.testing.assert_array_equal(history.runs, np.arange(len(scores)) // 20)


def test_views_are_read_only(scores):
    history = filled(scores[:10])
    with pytest.raises(ValueError):
        history.scores[0] = 1.0


def test_version_moves_on_every_change():
    history = ScoreHistory()
    versions = [history.version]
    history.append(10.0, 1)
    versions.append(history.version)
    history.extend([1.0, 2.0], 1)
    versions.append(history.version)
    history.end_run(4.3)
    versions.append(history.version)
    assert versions == sorted(set(versions))


@pytest.mark.parametrize("window", [1, 3, 100, 5000])
def test_rolling_mean_matches_naive(scores, window):
    history = filled(scores)
    np.testing.assert_allclose(history.rolling_mean(window), naive_rolling(scores, window), rtol=1e-9)
    assert history.rolling_mean_at(len(scores) - 1, window) == pytest.approx(
        scores[-window:].astype(np.float64).mean(), rel=1e-9
    )


def test_rolling_mean_rejects_bad_window(scores):
    with pytest.raises(ValueError):
        filled(scores[:5]).rolling_mean(0)


def test_column_edges_cover_the_range_in_order(scores):
    history = filled(scores)
    lo, hi = history.column_edges(80, 100, 2900)
    assert lo[0] == 100 and hi[-1] == 2900
    np.testing.assert_array_equal(lo[1:], hi[:-1])
    assert (hi > lo).all()


def test_column_edges_repeat_episodes_when_there_are_fewer_than_columns(scores):
    history = filled(scores[:5])
    lo, hi = history.column_edges(12)
    assert (hi - lo == 1).all()
    assert set(lo) == set(range(5))
    assert (np.diff(lo) >= 0).all()


@pytest.mark.parametrize("width", [1, 7, 80, 400, 6000])
@pytest.mark.parametrize("start, end", [(0, None), (1, 2999), (BLOCK - 1, 2 * BLOCK + 1), (1234, 1236)])
def test_columns_keep_exact_min_max_and_rolling_mean(scores, width, start, end):
    history = filled(scores)
    window = 50
    lo, hi = history.column_edges(width, start, end)
    low, high, means = history.columns(width, start, end, window)
    rolling = naive_rolling(scores, window)
    assert len(low) == len(high) == len(means) == width
    for column in range(width):
        chunk = scores[lo[column] : hi[column]]
        assert low[column] == chunk.min()
        assert high[column] == chunk.max()
        assert means[column] == pytest.approx(rolling[lo[column] : hi[column]].mean(), rel=1e-9)


def test_columns_stay_exact_while_episodes_keep_arriving():
    rng = np.random.default_rng(3)
    history = ScoreHistory(capacity=1)
    everything = np.zeros(0, dtype=np.float32)
    for batch in range(40):
        fresh = rng.integers(0, 501, int(rng.integers(1, 300))).astype(np.float32)
        history.extend(fresh, batch)
        everything = np.concatenate((everything, fresh))
        lo, _ = history.column_edges(60)
        low, high, _ = history.columns(60)
        np.testing.assert_array_equal(low, np.minimum.reduceat(everything, lo))
        np.testing.assert_array_equal(high, np.maximum.reduceat(everything, lo))


def test_columns_of_an_empty_range_are_empty(scores):
    assert all(len(part) == 0 for part in ScoreHistory().columns(80))
    assert all(len(part) == 0 for part in filled(scores).columns(80, 500, 500))


def test_run_starts_mark_every_change_of_run():
    history = ScoreHistory()
    for score, run in [(1, 1), (2, 1), (3, 2), (4, 2), (5, 2), (6, 5)]:
        history.append(score, run)
    history.extend([7, 8], 6)
    history.extend([9], 6)
    starts, ids = history.run_starts()
    assert starts.tolist() == [0, 2, 5, 6]
    assert ids.tolist() == [1, 2, 5, 6]


def test_end_run_marks_the_average_at_the_last_episode():
    history = ScoreHistory()
    with pytest.raises(ValueError):
        history.end_run(1.0)
    history.extend([10, 20, 30], 1)
    history.end_run(20.0)
    history.extend([40], 2)
    history.end_run(40.0)
    ends, averages = history.run_averages()
    assert ends.tolist() == [2, 3]
    assert averages.tolist() == [20.0, 40.0]


def built(runs) -> ScoreHistory:
    history = ScoreHistory(capacity=1)
    for number, scores, average in runs:
        history.extend(scores, number, np.arange(len(scores), dtype=np.float64))
        if average is not None:
            history.end_run(average)
    return history


def test_runs_replaced_and_put_in_their_place_read_as_if_appended_so(scores):
    """A late joiner's plot takes the history's copy of runs at a run's end: what it drew of a run
    (out of number order, an episode short) and a run it never saw are replaced in their place,
    and the run after them (still going) stays after them."""
    a, b, c, d = scores[:700], scores[700:1500], scores[1500:2200], scores[2200:2300]
    expected = built([(1, a, 10.0), (2, b, 20.0), (3, c, 30.0), (4, d, None)])
    history = built([(1, a, 10.0), (3, c[::-1][1:], 33.0), (4, d, None)])
    history.columns(80, window=100)  # its sums and tables were built before
    times = lambda s: np.arange(len(s), dtype=np.float64)  # noqa: E731
    assert history.replace_runs(2, 3, [(2, b, times(b), 20.0), (3, c, times(c), 30.0)])
    for name in ("scores", "runs", "times"):
        np.testing.assert_array_equal(getattr(history, name), getattr(expected, name))
    for got, want in zip(
        history.run_starts() + history.run_averages(), expected.run_starts() + expected.run_averages()
    ):
        np.testing.assert_array_equal(got, want)
    for window in (1, 100, 500):
        np.testing.assert_allclose(history.columns(80, window=window), expected.columns(80, window=window))
        np.testing.assert_allclose(history.per_run_means(window)[0], expected.per_run_means(window)[0])
    assert (history.low, history.high) == (expected.low, expected.high)


def test_runs_not_in_one_stretch_are_not_replaced(scores):
    history = built([(1, scores[:10], None), (2, scores[10:20], None), (1, scores[20:30], None)])
    assert not history.replace_runs(1, 1, [(1, scores[:30], np.zeros(30), None)])
    assert len(history) == 30
