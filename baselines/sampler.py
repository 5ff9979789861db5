"""Vectorised sampler of mixed real / synthetic mini-batches over in-memory arrays.

Each batch of B transitions holds ``B_real = floor(alpha * B)`` real and ``B_syn = B - B_real`` synthetic
ones, alpha being the **real** ratio (DyDiff Sec. 4.3 and Fig. 3d; Algorithm 1's ``floor(alpha*B)`` for
the synthetic share is a typo). While the synthetic pool holds fewer than ``B_syn`` transitions the batch
is all real. Sampling is uniform with replacement inside each part.

Every transition is packed as one float32 row ``[s, a, r, s', terminal, a']`` so a batch is one gather
per part; the result is a d3rlpy :class:`~d3rlpy.dataset.TransitionMiniBatch` (float32, 2-D, intervals
of ones, ``next_actions`` present, ``transitions=[]``) ready for ``algo.update``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from d3rlpy.dataset import TransitionMiniBatch

from stores.errors import UserInputError
from stores.schema import Transitions

#: Batches' worth of raw random draws made at once (amortises the generator's per-call cost).
RAW_BLOCK_BATCHES = 256

REQUIRED_KEYS: tuple[str, ...] = ("observations", "actions", "rewards", "next_observations", "terminals")


def split_batch(batch_size: int, real_ratio: float, num_synthetic: int) -> tuple[int, int]:
    """(B_real, B_syn) for one batch (REFERENCE Sec. 1, DyDiff Algorithm 1 with alpha the real ratio).

    B_real = floor(alpha * B) (a 1e-9 tolerance absorbs float error, e.g. 0.7 * 10), B_syn = B - B_real;
    when ``num_synthetic < B_syn`` (pool too small for its share) the batch is all real: (B, 0).
    """
    b_real = int(math.floor(real_ratio * batch_size + 1e-9))
    b_syn = batch_size - b_real
    if b_syn > num_synthetic:
        return batch_size, 0
    return b_real, b_syn


def next_actions_within_episodes(actions: np.ndarray, episode_ends: np.ndarray) -> np.ndarray:
    """a'_i = a_{i+1} for rows inside an episode, zeros on each episode's last row.

    actions: (N, act); episode_ends: (N,) bool, True on the last row of an episode (rows of one episode
    are contiguous and in order). Returns (N, act) float32.
    """
    nxt = np.zeros_like(actions, dtype=np.float32)
    if len(actions) > 1:
        nxt[:-1] = actions[1:]
    nxt[np.asarray(episode_ends, dtype=bool)] = 0.0
    return nxt


def pack_transitions(arrays: Mapping[str, np.ndarray], *, episode_ends: np.ndarray | None = None
                     ) -> np.ndarray:
    """Pack flat transition arrays into rows ``[s (obs), a (act), r, s' (obs), terminal, a' (act)]``.

    ``arrays`` needs :data:`REQUIRED_KEYS` (observations/next_observations (N, obs), actions (N, act),
    rewards (N,) or (N, 1), terminals (N,)); ``next_actions`` (N, act) is used when given, else it is
    derived with :func:`next_actions_within_episodes` from ``episode_ends`` (default: terminals, plus
    ``timeouts`` when present). Returns (N, 2*obs + 2*act + 2) float32. :func:`unpack_batch` inverts it.
    """
    missing = [k for k in REQUIRED_KEYS if k not in arrays]
    if missing:
        raise UserInputError(f"transition arrays lack {missing}; need {list(REQUIRED_KEYS)}")
    obs = np.asarray(arrays["observations"], dtype=np.float32)
    act = np.asarray(arrays["actions"], dtype=np.float32)
    n = obs.shape[0]
    if obs.ndim != 2 or act.ndim != 2 or act.shape[0] != n:
        raise UserInputError(f"observations {obs.shape} and actions {act.shape} must be 2-D with equal rows")
    rew = np.asarray(arrays["rewards"], dtype=np.float32).reshape(n, 1)
    nobs = np.asarray(arrays["next_observations"], dtype=np.float32)
    if nobs.shape != obs.shape:
        raise UserInputError(f"next_observations {nobs.shape} must match observations {obs.shape}")
    term = np.asarray(arrays["terminals"]).astype(np.float32).reshape(n, 1)
    if "next_actions" in arrays:
        nact = np.asarray(arrays["next_actions"], dtype=np.float32)
    else:
        if episode_ends is None:
            episode_ends = np.asarray(arrays["terminals"], dtype=bool).reshape(n)
            if "timeouts" in arrays:
                episode_ends = episode_ends | np.asarray(arrays["timeouts"], dtype=bool).reshape(n)
        nact = next_actions_within_episodes(act, episode_ends)
    packed = np.concatenate([obs, act, rew, nobs, term, nact], axis=1).astype(np.float32, copy=False)
    if not np.isfinite(packed).all():
        row = int(np.flatnonzero(~np.isfinite(packed).all(axis=1))[0])
        raise UserInputError(f"transition arrays hold NaN or inf (first bad row {row})")
    return np.ascontiguousarray(packed)


def unpack_batch(rows: np.ndarray, observation_size: int, action_size: int, *,
                 intervals: np.ndarray | None = None) -> TransitionMiniBatch:
    """Views of packed rows (B, 2*obs + 2*act + 2) as a d3rlpy TransitionMiniBatch (no copy).

    intervals: (B, 1) float32 ones to reuse (read-only); made fresh when None.
    """
    o, a = observation_size, action_size
    c = 0
    obs = rows[:, c:c + o]
    c += o
    act = rows[:, c:c + a]
    c += a
    rew = rows[:, c:c + 1]
    c += 1
    nobs = rows[:, c:c + o]
    c += o
    term = rows[:, c:c + 1]
    c += 1
    nact = rows[:, c:c + a]
    return TransitionMiniBatch(
        observations=obs, actions=act, rewards=rew, next_observations=nobs, next_actions=nact,
        terminals=term,
        intervals=intervals if intervals is not None else np.ones((rows.shape[0], 1), np.float32),
        transitions=[])


class MixedSampler:
    """Draws mixed real/synthetic TransitionMiniBatches (see the module docstring).

    real: a dict of flat arrays (:data:`REQUIRED_KEYS`, optional ``timeouts`` / ``next_actions``) or a
    :class:`stores.schema.Transitions`. real_ratio: alpha in [0, 1], the fraction of real rows per batch.
    max_synthetic: capacity of the synthetic pool; beyond it the oldest rows are dropped first (FIFO);
    None means unbounded. seed: seeds the sampler's own ``numpy.random.Generator`` (PCG64).

    Pool accounting (:meth:`pool_stats`): ``updates`` counts the batches drawn; every synthetic row
    remembers the value of ``updates`` when it was added (its birth), so its age is ``updates - birth``
    (0 for the batch drawn right after the round that made it). Kept in O(1) per batch: the sum of the
    pool's births and, the pool being FIFO, its oldest birth.
    """

    def __init__(self, real: Mapping[str, np.ndarray] | Transitions, *, batch_size: int = 256,
                 real_ratio: float = 0.6, max_synthetic: int | None = None, seed: int = 0) -> None:
        if not 0.0 <= real_ratio <= 1.0:
            raise UserInputError(f"real ratio must lie in [0, 1], got {real_ratio}")
        if batch_size < 1:
            raise UserInputError(f"batch size must be >= 1, got {batch_size}")
        if max_synthetic is not None and max_synthetic < 1:
            raise UserInputError(f"max_synthetic must be >= 1 or None, got {max_synthetic}")
        if isinstance(real, Transitions):
            ends = np.zeros(len(real), dtype=bool)
            ends[real.episode_starts[1:] - 1] = True
            arrays = {k: getattr(real, k) for k in REQUIRED_KEYS}
            self._real = pack_transitions(arrays, episode_ends=ends)
        else:
            self._real = pack_transitions(real)
        if self._real.shape[0] == 0:
            raise UserInputError("the real dataset holds no transitions")
        self.observation_size = int(np.asarray(real.observations if isinstance(real, Transitions)
                                               else real["observations"]).shape[1])
        self.action_size = (self._real.shape[1] - 2 * self.observation_size - 2) // 2
        self.batch_size = int(batch_size)
        self.real_ratio = float(real_ratio)
        self.max_synthetic = max_synthetic
        self.rng = np.random.Generator(np.random.PCG64(seed))
        # raw 64-bit draws are made in blocks and mapped to rows by modulo (bias < n / 2**64)
        self._raw = np.empty(0, dtype=np.uint64)
        self._raw_pos = 0
        self._intervals = np.ones((batch_size, 1), dtype=np.float32)
        self._intervals.flags.writeable = False
        width = self._real.shape[1]
        initial = max_synthetic if max_synthetic is not None else 1024
        self._syn = np.empty((initial, width), dtype=np.float32)
        self._syn_count = 0
        self._syn_head = 0  # next row to overwrite once the pool is full (FIFO ring)
        self.synthetic_added = 0  # every synthetic row ever added, dropped ones included
        self._birth = np.zeros(initial, dtype=np.int64)  # value of `updates` when each pool row was added
        self._birth_sum = 0
        self.updates = 0  # batches drawn
        self.synthetic_draws = 0  # synthetic rows drawn into batches, in all
        self._age_sum = 0.0  # sum over batches holding synthetic rows of the pool's mean age
        self._age_batches = 0
        self._age_max = 0

    @property
    def num_real(self) -> int:
        return int(self._real.shape[0])

    @property
    def num_synthetic(self) -> int:
        """Synthetic transitions currently in the pool (at most ``max_synthetic``)."""
        return self._syn_count

    @property
    def width(self) -> int:
        """Floats per packed row: 2*obs + 2*act + 2."""
        return int(self._real.shape[1])

    def split(self) -> tuple[int, int]:
        """(B_real, B_syn) the next batch will use (:func:`split_batch`)."""
        return split_batch(self.batch_size, self.real_ratio, self._syn_count)

    def add_synthetic(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Append synthetic transitions (keys as :func:`pack_transitions`); FIFO beyond ``max_synthetic``."""
        rows = pack_transitions(arrays)
        if rows.shape[1] != self.width:
            raise UserInputError(
                f"synthetic rows have {rows.shape[1]} packed floats but the real data has {self.width}; "
                "observation/action sizes must match the dataset")
        n = rows.shape[0]
        self.synthetic_added += n
        if n == 0:
            return
        birth = self.updates
        cap = self.max_synthetic
        if cap is None:
            need = self._syn_count + n
            if need > self._syn.shape[0]:
                size = max(need, 2 * self._syn.shape[0])
                grown = np.empty((size, self.width), dtype=np.float32)
                grown[:self._syn_count] = self._syn[:self._syn_count]
                self._syn = grown
                births = np.zeros(size, dtype=np.int64)
                births[:self._syn_count] = self._birth[:self._syn_count]
                self._birth = births
            self._syn[self._syn_count:need] = rows
            self._birth[self._syn_count:need] = birth
            self._birth_sum += n * birth
            self._syn_count = need
            self._syn_head = need
            return
        if n >= cap:  # only the newest `cap` rows survive
            self._syn[:] = rows[-cap:]
            self._birth[:] = birth
            self._birth_sum = cap * birth
            self._syn_count, self._syn_head = cap, 0
            return
        positions = (self._syn_head + np.arange(n)) % cap
        evicted = positions[positions < self._syn_count]  # the pool fills [0, count) before wrapping
        self._birth_sum += n * birth - int(self._birth[evicted].sum())
        self._birth[positions] = birth
        first = min(n, cap - self._syn_head)
        self._syn[self._syn_head:self._syn_head + first] = rows[:first]
        if first < n:
            self._syn[:n - first] = rows[first:]
        self._syn_head = (self._syn_head + n) % cap
        self._syn_count = min(cap, self._syn_count + n)

    def _oldest_birth(self) -> int:
        """Birth of the oldest pool row (FIFO: index 0 until the ring is full, then the head)."""
        full = self.max_synthetic is not None and self._syn_count == self.max_synthetic
        return int(self._birth[self._syn_head if full else 0])

    def pool_age(self) -> tuple[float, int]:
        """(mean, max) age in updates of the rows in the pool now; (nan, 0) when it is empty."""
        if self._syn_count == 0:
            return math.nan, 0
        return self.updates - self._birth_sum / self._syn_count, self.updates - self._oldest_birth()

    def pool_stats(self) -> dict[str, float]:
        """Schedule figures of the synthetic pool (JSON-native; NaN when undefined).

        updates: batches drawn. inflow_per_update: synthetic rows added per update. age_mean: the pool's
        mean age averaged over the batches that held synthetic rows (= the mean age of the synthetic rows
        drawn, as draws are uniform); age_max: the oldest row any such batch could draw. age_mean_now /
        age_max_now: the pool as it is. draws_per_row: synthetic rows drawn per row added (how often
        each row was reused); expected_draws_per_row: B_syn / inflow, the steady-state value.
        """
        mean_now, max_now = self.pool_age()
        b_syn = self.batch_size - int(math.floor(self.real_ratio * self.batch_size + 1e-9))
        inflow = self.synthetic_added / self.updates if self.updates else math.nan
        return {
            "updates": self.updates, "synthetic_added": self.synthetic_added,
            "pool_size": self._syn_count, "capacity": self.max_synthetic if self.max_synthetic else math.nan,
            "inflow_per_update": inflow,
            "age_mean": self._age_sum / self._age_batches if self._age_batches else math.nan,
            "age_max": self._age_max if self._age_batches else math.nan,
            "age_mean_now": mean_now, "age_max_now": max_now,
            "synthetic_draws": self.synthetic_draws,
            "draws_per_row": (self.synthetic_draws / self.synthetic_added if self.synthetic_added
                              else math.nan),
            "expected_draws_per_row": b_syn / inflow if inflow and math.isfinite(inflow) else math.nan,
        }

    def synthetic_rows(self) -> np.ndarray:
        """The pool's packed rows, oldest first, (num_synthetic, width) float32 (a copy)."""
        if self.max_synthetic is None or self._syn_count < self.max_synthetic:
            return self._syn[:self._syn_count].copy()
        return np.concatenate([self._syn[self._syn_head:], self._syn[:self._syn_head]])

    def _draws(self) -> np.ndarray:
        """The next ``batch_size`` raw uint64 draws (refilled 256 batches at a time)."""
        b = self.batch_size
        if self._raw_pos + b > self._raw.size:
            self._raw = self.rng.bit_generator.random_raw(RAW_BLOCK_BATCHES * b)
            self._raw_pos = 0
        raw = self._raw[self._raw_pos:self._raw_pos + b]
        self._raw_pos += b
        return raw

    def sample_rows(self) -> np.ndarray:
        """One batch as packed rows (B, width): real rows first, then synthetic ones.

        Row indices are uniform with replacement: ``raw % n`` over each part's ``n`` rows.
        """
        b_real, b_syn = self.split()
        raw = self._draws()
        out = np.empty((self.batch_size, self.width), dtype=np.float32)
        np.take(self._real, raw[:b_real] % np.uint64(self._real.shape[0]), axis=0, out=out[:b_real])
        if b_syn:
            np.take(self._syn, raw[b_real:] % np.uint64(self._syn_count), axis=0, out=out[b_real:])
            self._age_sum += self.updates - self._birth_sum / self._syn_count
            self._age_batches += 1
            self._age_max = max(self._age_max, self.updates - self._oldest_birth())
            self.synthetic_draws += b_syn
        self.updates += 1
        return out

    def sample(self) -> TransitionMiniBatch:
        """One d3rlpy TransitionMiniBatch of ``batch_size`` rows (:meth:`sample_rows` unpacked)."""
        return unpack_batch(self.sample_rows(), self.observation_size, self.action_size,
                            intervals=self._intervals)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue identically: generator state and the synthetic pool."""
        return {"rng": self.rng.bit_generator.state, "raw": self._raw.copy(), "raw_pos": self._raw_pos,
                "synthetic": self._syn[:self._syn_count].copy(),
                "synthetic_birth": self._birth[:self._syn_count].copy(),
                "synthetic_head": self._syn_head, "synthetic_added": self.synthetic_added,
                "pool_counters": {"updates": self.updates, "synthetic_draws": self.synthetic_draws,
                                  "age_sum": self._age_sum, "age_batches": self._age_batches,
                                  "age_max": self._age_max}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`: the pool in its physical layout, so the next draws are identical."""
        rows = np.asarray(state["synthetic"], dtype=np.float32)
        cap = self.max_synthetic
        size = cap if cap is not None else max(1024, rows.shape[0])
        self._syn = np.empty((size, self.width), dtype=np.float32)
        self._syn[:rows.shape[0]] = rows
        self._syn_count = rows.shape[0]
        self._syn_head = int(state["synthetic_head"])
        self.synthetic_added = int(state["synthetic_added"])
        self._birth = np.zeros(size, dtype=np.int64)
        births = state.get("synthetic_birth")  # absent in checkpoints of older versions: age from 0
        if births is not None:
            self._birth[:rows.shape[0]] = np.asarray(births, dtype=np.int64)
        self._birth_sum = int(self._birth[:rows.shape[0]].sum())
        counters = state.get("pool_counters", {})
        self.updates = int(counters.get("updates", 0))
        self.synthetic_draws = int(counters.get("synthetic_draws", 0))
        self._age_sum = float(counters.get("age_sum", 0.0))
        self._age_batches = int(counters.get("age_batches", 0))
        self._age_max = int(counters.get("age_max", 0))
        self.rng.bit_generator.state = state["rng"]
        self._raw = np.asarray(state["raw"], dtype=np.uint64).copy()
        self._raw_pos = int(state["raw_pos"])
