"""Every episode's score in growable numpy arrays, with per-column downsampling for plotting.

`ScoreHistory.columns` costs about the same at 10^6 episodes as at 10^3: prefix sums give
any column's mean of the rolling mean in O(1), and a sparse table over fixed-size blocks
gives any column's min and max in O(1) plus two short edge scans.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

BLOCK = 32  # episodes per block of the min/max sparse table
# one run's episodes as the plot takes them again: (run number, scores, when each ended, ENV_DONE average or None)
RunEpisodes = tuple[int, np.ndarray, np.ndarray, float | None]


class _Growable:
    """A 1-D numpy array with amortised O(1) append (capacity doubles)."""

    def __init__(self, dtype, capacity: int = 1024, fill=0):
        self._data = np.full(capacity, fill, dtype=dtype)
        self._fill = fill
        self.size = 0

    def reserve(self, size: int) -> None:
        if size > len(self._data):
            capacity = max(size, 2 * len(self._data))
            grown = np.full(capacity, self._fill, dtype=self._data.dtype)
            grown[: self.size] = self._data[: self.size]
            self._data = grown

    def append(self, value) -> None:
        if self.size == len(self._data):
            self.reserve(self.size + 1)
        self._data[self.size] = value
        self.size += 1

    def extend(self, values: np.ndarray) -> None:
        self.reserve(self.size + len(values))
        self._data[self.size : self.size + len(values)] = values
        self.size += len(values)

    def truncate(self, size: int) -> None:
        self.size = min(self.size, size)

    @property
    def view(self) -> np.ndarray:
        return self._data[: self.size]


class _BlockSparseTable:
    """Min and max over any run of whole blocks in O(1), extended incrementally.

    Level k holds, for every block j, the extremum of blocks j .. j + 2**k - 1.
    """

    def __init__(self):
        self.blocks = 0
        self._min = np.zeros((1, 0), dtype=np.float32)
        self._max = np.zeros((1, 0), dtype=np.float32)
        self._reserve(1)

    def _reserve(self, blocks: int) -> None:
        capacity = self._min.shape[1]
        if blocks <= capacity:
            return
        capacity = max(blocks, 2 * capacity, 64)
        levels = capacity.bit_length()
        for name in ("_min", "_max"):
            old = getattr(self, name)
            grown = np.zeros((levels, capacity), dtype=np.float32)
            grown[: old.shape[0], : self.blocks] = old[:, : self.blocks]
            setattr(self, name, grown)

    def truncate(self, blocks: int) -> None:
        """Forget the blocks from ``blocks`` on (every level is redone from there as they come back)."""
        self.blocks = min(self.blocks, blocks)

    def extend_to(self, scores: np.ndarray) -> None:
        """Take in every complete block of ``scores`` not yet in the table."""
        old, new = self.blocks, len(scores) // BLOCK
        if new == old:
            return
        self._reserve(new)
        chunk = scores[old * BLOCK : new * BLOCK].reshape(-1, BLOCK)
        self._min[0, old:new] = chunk.min(axis=1)
        self._max[0, old:new] = chunk.max(axis=1)
        level, span = 1, 2
        while span <= new:
            half = span // 2
            first, stop = max(0, old - span + 1), new - span + 1
            for table, pick in ((self._min, np.minimum), (self._max, np.maximum)):
                pick(
                    table[level - 1, first:stop],
                    table[level - 1, first + half : stop + half],
                    out=table[level, first:stop],
                )
            level, span = level + 1, span * 2
        self.blocks = new

    def query(self, first: np.ndarray, stop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Min and max over blocks [first, stop) per entry; +inf/-inf where empty."""
        count = stop - first
        empty = count <= 0
        count = np.where(empty, 1, count)
        level = np.floor(np.log2(count)).astype(np.intp)
        right = np.where(empty, first, stop - (1 << level))
        first = np.where(empty, 0, first)
        right = np.where(empty, 0, right)
        lo = np.minimum(self._min[level, first], self._min[level, right])
        hi = np.maximum(self._max[level, first], self._max[level, right])
        return np.where(empty, np.inf, lo), np.where(empty, -np.inf, hi)


class ScoreHistory:
    """Scores of every episode with their run numbers, run boundaries and run averages.

    `version` goes up on every change, so a view can redraw only when it moved.
    """

    def __init__(self, capacity: int = 1024):
        self._scores = _Growable(np.float32, capacity)
        self.low, self.high = math.inf, -math.inf  # the lowest and highest score: the plot's axis follows them
        self._runs = _Growable(np.int32, capacity)
        self._times = _Growable(np.float64, capacity, fill=np.nan)  # when each episode ended; NaN: unknown
        self._per_run: tuple = (None, None, None)  # (version, window) -> per-run means and their prefix sums
        self._run_starts = _Growable(np.int64, 64)  # episode index where each run begins
        self._run_ids = _Growable(np.int32, 64)
        self._average_ends = _Growable(np.int64, 64)  # last episode index of each finished run
        self._averages = _Growable(np.float64, 64)
        # Prefix sums, extended lazily: _sums[k] = sum(scores[:k]), _sums2[k] = sum(_sums[:k]).
        self._sums = _Growable(np.float64, capacity + 1)
        self._sums2 = _Growable(np.float64, capacity + 2)
        self._sums.append(0.0)
        self._sums2.extend(np.zeros(2))
        self._table = _BlockSparseTable()
        self._head_cache: dict[int, np.ndarray] = {}
        self.version = 0

    def __len__(self) -> int:
        return self._scores.size

    @property
    def scores(self) -> np.ndarray:
        """Every episode's score (float32, read-only view)."""
        return self._readonly(self._scores.view)

    @property
    def times(self) -> np.ndarray:
        """When each episode ended (Unix seconds; NaN where not known), read-only."""
        return self._readonly(self._times.view)

    @property
    def runs(self) -> np.ndarray:
        """Every episode's run number (int32, read-only view)."""
        return self._readonly(self._runs.view)

    @staticmethod
    def _readonly(array: np.ndarray) -> np.ndarray:
        view = array.view()
        view.flags.writeable = False
        return view

    def append(self, score: float, run: int, wall_time: float = np.nan) -> None:
        """Record one finished episode of run ``run`` (that ended at ``wall_time``)."""
        if not self._run_ids.size or self._run_ids.view[-1] != run:
            self._run_starts.append(self._scores.size)
            self._run_ids.append(run)
        self._scores.append(score)
        self.low, self.high = min(self.low, score), max(self.high, score)
        self._runs.append(run)
        self._times.append(wall_time)
        self.version += 1

    def extend(self, scores, run: int, times=None) -> None:
        """Record many finished episodes of run ``run`` at once (``times``: when each ended)."""
        scores = np.asarray(scores, dtype=np.float32)
        if not len(scores):
            return
        if not self._run_ids.size or self._run_ids.view[-1] != run:
            self._run_starts.append(self._scores.size)
            self._run_ids.append(run)
        self._scores.extend(scores)
        self.low, self.high = min(self.low, float(scores.min())), max(self.high, float(scores.max()))
        self._runs.extend(np.full(len(scores), run, dtype=np.int32))
        self._times.extend(np.full(len(scores), np.nan) if times is None else np.asarray(times, dtype=np.float64))
        self.version += 1

    def has_run(self, run: int) -> bool:
        """Whether run ``run`` has an episode here (the latest run first: the usual question)."""
        return bool(self._run_ids.size) and (self._run_ids.view[-1] == run or bool((self._run_ids.view == run).any()))

    def end_run(self, average: float) -> None:
        """Mark the run that recorded the latest episode as finished with ``average`` (ENV_DONE)."""
        if not len(self):
            raise ValueError("no episode recorded yet")
        self._average_ends.append(len(self) - 1)
        self._averages.append(average)
        self.version += 1

    def replace_runs(self, first: int, last: int, runs: list[RunEpisodes]) -> bool:
        """The episodes of runs ``first``..``last`` (by run number) become ``runs`` ((number, scores,
        times, ENV_DONE average or None) each, in order), where those runs are or belong; the
        episodes after them stay after them. False (nothing changed) when those runs are not one
        stretch here."""
        starts, ids = self._run_starts.view, self._run_ids.view
        inside = np.flatnonzero((ids >= first) & (ids <= last))
        if len(inside):
            if inside[-1] - inside[0] + 1 != len(inside):
                return False  # another run's episodes among them: no one place for them
            start = int(starts[inside[0]])
            end = int(starts[inside[-1] + 1]) if inside[-1] + 1 < len(starts) else len(self)
        else:  # not here at all: before the first later run, else at the end
            later = np.flatnonzero(ids > last)
            start = end = int(starts[later[0]]) if len(later) else len(self)
        tail = self._runs_from(end)
        self._truncate(start)
        for number, scores, times, average in [*runs, *tail]:
            self.extend(scores, number, times)
            if average is not None and len(scores):
                self.end_run(average)
        self.version += 1
        return True

    def _runs_from(self, index: int) -> list[RunEpisodes]:
        """The episodes from ``index`` on, a run at a time, as :meth:`replace_runs` takes them (copies)."""
        starts = self._run_starts.view
        ends = self._average_ends.view
        bounds = [index, *(int(s) for s in starts if s > index), len(self)]
        runs: list[RunEpisodes] = []
        for lo, hi in itertools.pairwise(bounds):
            if hi > lo:
                ended = np.flatnonzero(ends == hi - 1)
                average = float(self._averages.view[ended[-1]]) if len(ended) else None
                runs.append(
                    (int(self._runs.view[lo]), self._scores.view[lo:hi].copy(), self._times.view[lo:hi].copy(), average)
                )
        return runs

    def _truncate(self, size: int) -> None:
        """Forget every episode from ``size`` on (and the runs, averages and sums that came with them)."""
        for column in (self._scores, self._runs, self._times):
            column.truncate(size)
        kept = int(np.searchsorted(self._run_starts.view, size))  # runs that begin before ``size``
        self._run_starts.truncate(kept)
        self._run_ids.truncate(kept)
        kept = int(np.searchsorted(self._average_ends.view, size))
        self._average_ends.truncate(kept)
        self._averages.truncate(kept)
        self._sums.truncate(min(self._sums.size, size + 1))
        self._sums2.truncate(min(self._sums2.size, size + 2))
        self._table.truncate(size // BLOCK)
        self._head_cache.clear()
        scores = self._scores.view
        self.low, self.high = (float(scores.min()), float(scores.max())) if size else (math.inf, -math.inf)

    def run_starts(self) -> tuple[np.ndarray, np.ndarray]:
        """(first episode index, run number) of every run, in order."""
        return self._run_starts.view, self._run_ids.view

    def run_averages(self) -> tuple[np.ndarray, np.ndarray]:
        """(last episode index, ENV_DONE average) of every finished run, in order."""
        return self._average_ends.view, self._averages.view

    def _sync(self) -> None:
        """Bring the prefix sums and the sparse table up to date with the scores."""
        n = len(self)
        done = self._sums.size - 1
        if done < n:
            fresh = np.cumsum(self._scores.view[done:n], dtype=np.float64) + self._sums.view[-1]
            self._sums.extend(fresh)
            self._sums2.extend(np.cumsum(fresh) + self._sums2.view[-1])
            self._table.extend_to(self._scores.view)

    def rolling_mean(self, window: int) -> np.ndarray:
        """Trailing mean over ``window`` episodes (fewer at the start), one value per episode."""
        self._sync()
        return trailing_means(self._sums.view, _check_window(window))

    def per_run_means(self, window: int) -> tuple[np.ndarray, np.ndarray]:
        """Trailing mean over ``window`` episodes that restarts with each run, and its prefix sums
        (for column means); computed once per change of the history or the window."""
        key = (self.version, _check_window(window))
        if self._per_run[0] != key:
            self._sync()
            stop = np.arange(1, len(self) + 1)
            starts = self._run_starts.view
            run_start = starts[np.searchsorted(starts, stop - 1, side="right") - 1]
            first = np.maximum(stop - window, run_start)
            sums = self._sums.view
            means = (sums[stop] - sums[first]) / (stop - first)
            self._per_run = (key, means, np.concatenate(([0.0], np.cumsum(means))))
        return self._per_run[1], self._per_run[2]

    def rolling_mean_at(self, index: int, window: int) -> float:
        """The rolling mean at one episode, in O(1)."""
        window = _check_window(window)
        if not 0 <= index < len(self):
            raise IndexError(index)
        self._sync()
        sums = self._sums.view
        start = max(0, index + 1 - window)
        return float((sums[index + 1] - sums[start]) / (index + 1 - start))

    def _rolling_prefix(self, k: np.ndarray, window: int) -> np.ndarray:
        """Sum of the rolling mean over episodes [0, k), for every k (O(1) each)."""
        head = self._head_prefix(window)
        w = window
        if len(self) < w:
            return head[k]
        sums2 = self._sums2.view
        kk = np.maximum(k, w - 1)
        tail = ((sums2[kk + 1] - sums2[w]) - (sums2[kk + 1 - w] - sums2[0])) / w
        return np.where(k <= w - 1, head[np.minimum(k, len(head) - 1)], head[-1] + tail)

    def _head_prefix(self, window: int) -> np.ndarray:
        """Prefix sums of the rolling mean over the first window-1 episodes (they average fewer)."""
        cached = self._head_cache.get(window)
        if cached is not None:
            return cached
        count = min(window - 1, len(self))
        sums = self._sums.view
        head = np.zeros(count + 1)
        head[1:] = np.cumsum(sums[1 : count + 1] / np.arange(1, count + 1))
        if count == window - 1:  # complete: those episodes never change again
            self._head_cache[window] = head
        return head

    def column_edges(self, width: int, start: int = 0, end: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Episode ranges [lo, hi) of ``width`` columns spread over episodes [start, end).

        With fewer episodes than columns, neighbouring columns show the same episode.
        """
        start, end = self._range(start, end)
        if width < 1 or end <= start:
            empty = np.zeros(0, dtype=np.intp)
            return empty, empty
        span = end - start
        cols = np.arange(width + 1, dtype=np.int64)
        edges = start + (cols * span) // width
        lo = edges[:-1]
        hi = np.maximum(edges[1:], lo + 1)
        return lo.astype(np.intp), hi.astype(np.intp)

    def columns(
        self, width: int, start: int = 0, end: int | None = None, window: int = 100
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per column: (min score, max score, mean of the rolling mean) over its episodes."""
        window = _check_window(window)
        lo, hi = self.column_edges(width, start, end)
        if not len(lo):
            empty = np.zeros(0)
            return empty, empty, empty
        self._sync()
        low, high = self._column_extrema(lo, hi)
        means = (self._rolling_prefix(hi, window) - self._rolling_prefix(lo, window)) / (hi - lo)
        return low, high, means

    def _column_extrema(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact min and max of scores[lo:hi] per column, in time independent of the range sizes."""
        first_block = -(-lo // BLOCK)
        stop_block = hi // BLOCK
        head_stop = np.minimum(first_block * BLOCK, hi)
        tail_start = np.maximum(stop_block * BLOCK, head_stop)
        low, high = self._table.query(first_block, stop_block)
        for a, b in ((lo, head_stop), (tail_start, hi)):
            edge_low, edge_high = self._scan(a, b)
            low, high = np.minimum(low, edge_low), np.maximum(high, edge_high)
        return low.astype(np.float64), high.astype(np.float64)

    def _scan(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Min and max of scores[a:b] per entry where every b - a < BLOCK (+inf/-inf when empty)."""
        scores = self._scores.view
        index = a[:, None] + np.arange(BLOCK)
        inside = index < b[:, None]
        values = scores[np.minimum(index, len(scores) - 1)]
        return (np.where(inside, values, np.inf).min(axis=1), np.where(inside, values, -np.inf).max(axis=1))

    def _range(self, start: int, end: int | None) -> tuple[int, int]:
        n = len(self)
        end = n if end is None else min(end, n)
        return max(0, min(start, end)), end


def _check_window(window: int) -> int:
    window = int(window)
    if window < 1:
        raise ValueError("window must be at least 1")
    return window


def trailing_means(prefix_sums: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last ``window`` values at each index (fewer at the start), from prefix sums
    (``prefix_sums[i]`` is the sum of the first ``i`` values)."""
    stop = np.arange(1, len(prefix_sums))
    start = np.maximum(stop - window, 0)
    return (prefix_sums[stop] - prefix_sums[start]) / (stop - start)


def rolling_mean(scores: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over ``window`` scores (fewer at the start), one value per score."""
    return trailing_means(np.concatenate(([0.0], np.cumsum(scores, dtype=np.float64))), _check_window(window))
