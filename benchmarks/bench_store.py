"""Replay-store benchmark: append, load, export and disk size, side by side with NumPy's npz.

Two data sets of hopper shapes (obs 11, act 3), ``--rows`` transitions each:

* ``random``: standard-normal float32 (compresses badly: the worst case for the disk-size target);
* ``hopper``: real Hopper-v5 trajectories (20k MuJoCo steps under smooth random actions) tiled to
  ``--rows`` transitions (physical states, realistic compression).

For each: append as TrajectoryBatches of ``--batch-rows`` rows then close (flush) vs. ``np.savez`` /
``np.savez_compressed`` of the same columns the store holds; load everything into memory vs. ``np.load``;
store size on disk vs. the compressed npz; export to Minari / npz / D4RL HDF5. A last row appends small
batches flushed one by one (how the training loop writes). Medians of ``--repeats`` runs.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_store.py --rows 1000000 --repeats 3
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from stores.replay import ReplayStore
from stores.schema import TrajectoryBatch

OBS, ACT = 11, 3


def _median_time(fn: Callable[[], Any], repeats: int, setup: Callable[[], Any] | None = None
                 ) -> tuple[float, Any]:
    """Median wall time of ``fn()`` over ``repeats`` runs (``setup()`` runs untimed before each)."""
    times, out = [], None
    for _ in range(repeats):
        if setup is not None:
            setup()
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def _dir_bytes(path: Path) -> int:
    if not path.is_dir():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def random_trajectories(rows: int, length: int, seed: int = 0) -> dict[str, np.ndarray]:
    """(B, L+1, obs) states, (B, L, act) actions, (B, L) rewards of standard-normal float32, B*L = rows."""
    rng = np.random.default_rng(seed)
    b = rows // length
    return {"observations": rng.standard_normal((b, length + 1, OBS), dtype=np.float32),
            "actions": rng.uniform(-1, 1, (b, length, ACT)).astype(np.float32),
            "rewards": rng.standard_normal((b, length), dtype=np.float32),
            "terminals": np.zeros((b, length), dtype=bool)}


def hopper_stream(steps: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``steps`` real Hopper-v5 steps under smooth (Ornstein-Uhlenbeck) random actions, episodes back to back.

    Returns states (steps+1, obs), actions (steps, act), rewards (steps,), float32.
    """
    import gymnasium as gym

    env = gym.make("Hopper-v5")
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    states, actions, rewards = [obs], [], []
    a = np.zeros(ACT)
    for _ in range(steps):
        a = np.clip(0.85 * a + 0.3 * rng.standard_normal(ACT), -1.0, 1.0)
        obs, r, term, trunc, _ = env.step(a.astype(np.float32))
        actions.append(a)
        rewards.append(r)
        if term or trunc:
            obs, _ = env.reset(seed=int(rng.integers(1 << 30)))
        states.append(obs)
    env.close()
    return (np.asarray(states, np.float32), np.asarray(actions, np.float32), np.asarray(rewards, np.float32))


def hopper_trajectories(rows: int, length: int, seed: int = 0, stream_steps: int = 20_000
                        ) -> dict[str, np.ndarray]:
    """Windows of ``length`` steps cut from :func:`hopper_stream` and tiled to ``rows`` transitions.

    The stream (20k rows, ~0.9 MB of observations) is longer than any compressor window here (zlib 32 KB,
    Blosc blocks), so tiling does not make the data artificially compressible.
    """
    obs, act, rew = hopper_stream(stream_steps, seed)
    windows = stream_steps // length
    b = rows // length
    steps = (np.arange(b) % windows)[:, None] * length + np.arange(length + 1)[None, :]
    return {"observations": obs[steps], "actions": act[steps[:, :-1]], "rewards": rew[steps[:, :-1]],
            "terminals": np.zeros((b, length), dtype=bool)}


def batches(data: dict[str, np.ndarray], batch_rows: int) -> list[TrajectoryBatch]:
    """Split trajectories into TrajectoryBatches of about ``batch_rows`` rows with test provenance."""
    b, length = data["actions"].shape[:2]
    per = max(1, batch_rows // length)
    out = []
    for k, i in enumerate(range(0, b, per)):
        j = min(i + per, b)
        n = j - i
        out.append(TrajectoryBatch(
            observations=data["observations"][i:j], actions=data["actions"][i:j],
            rewards=data["rewards"][i:j], terminals=data["terminals"][i:j],
            lengths=np.full(n, length, dtype=np.int64), generator="bench",
            round=np.full(n, k, dtype=np.int64), learner_step=np.full(n, 1000 * k, dtype=np.int64),
            filter_score=np.full(n, np.nan, dtype=np.float32), start_index=np.arange(i, j, dtype=np.int64)))
    return out


def bench_one(name: str, data: dict[str, np.ndarray], work: Path, args: argparse.Namespace) -> list[str]:
    rows = int(data["actions"].shape[0] * data["actions"].shape[1])
    parts = batches(data, args.batch_rows)
    store_path = work / f"{name}.zarr"

    def append() -> None:
        with ReplayStore.create(store_path, observation_size=OBS, action_size=ACT, overwrite=True,
                                attrs={"env_id": "Hopper-v5"}) as store:
            for batch in parts:
                store.append(batch)

    t_append, _ = _median_time(append, args.repeats,
                               setup=lambda: shutil.rmtree(store_path, ignore_errors=True))
    store = ReplayStore.open(store_path)
    t_load, loaded = _median_time(lambda: ReplayStore.open(store_path).load(), args.repeats)
    columns = {k: v for k, v in loaded.items()}
    npz, npzc = work / f"{name}.npz", work / f"{name}-c.npz"
    t_savez, _ = _median_time(lambda: np.savez(npz, **columns), args.repeats)
    t_savezc, _ = _median_time(lambda: np.savez_compressed(npzc, **columns), args.repeats)

    def np_load(path: Path) -> dict[str, np.ndarray]:
        with np.load(path) as f:
            return {k: f[k] for k in f.files}

    t_npload, _ = _median_time(lambda: np_load(npz), args.repeats)
    t_npcload, _ = _median_time(lambda: np_load(npzc), args.repeats)
    size_store, size_npz, size_npzc = store.disk_bytes(), _dir_bytes(npz), _dir_bytes(npzc)
    float_only = {k: columns[k] for k in ("observations", "actions", "rewards", "next_observations",
                                           "terminals", "timeouts")}
    np.savez_compressed(work / "floats.npz", **float_only)

    rate = lambda seconds: rows / seconds / 1e6  # noqa: E731 - M transitions/s
    lines = [
        f"**{name}** data, {rows:,} transitions (all {len(columns) - 1} store columns + episode_starts):",
        "",
        "| operation | replay store | np.savez | np.savez_compressed | store vs savez | "
        "store vs compressed |",
        "|---|---|---|---|---|---|",
        f"| append / write (M transitions/s) | {rate(t_append):.2f} | {rate(t_savez):.2f} | "
        f"{rate(t_savezc):.2f} | {t_savez / t_append:.2f}x | {t_savezc / t_append:.2f}x |",
        f"| load into memory (s) | {t_load:.3f} | {t_npload:.3f} | {t_npcload:.3f} | "
        f"{t_npload / t_load:.2f}x | {t_npcload / t_load:.2f}x |",
        f"| disk size (MB) | {size_store / 1e6:.1f} | {size_npz / 1e6:.1f} | {size_npzc / 1e6:.1f} | "
        f"{size_store / size_npz:.3f} | {size_store / size_npzc:.3f} |",
        "",
        f"(store size vs. compressed npz of the six transition columns only: "
        f"{_dir_bytes(work / 'floats.npz') / 1e6:.1f} MB.) Speed columns: the ratio is how many times faster "
        "the store is; size columns: store size / npz size.",
        "",
    ]
    # exports
    from stores.convert import write_hdf5, write_minari, write_npz

    exports = []
    if not args.skip_minari:
        def minari() -> None:
            shutil.rmtree(work / "minari", ignore_errors=True)
            write_minari(store, f"bench/{name}-v0", root=work / "minari")

        exports.append(("Minari", _median_time(minari, 1)[0]))
    exports.append(("npz (compressed)", _median_time(lambda: write_npz(store, work / "e.npz"), 1)[0]))
    exports.append(("D4RL HDF5", _median_time(lambda: write_hdf5(store, work / "e.hdf5"), 1)[0]))
    lines += ["| export | seconds | M transitions/s |", "|---|---|---|"]
    lines += [f"| {label} | {sec:.2f} | {rate(sec):.3f} |" for label, sec in exports]
    lines.append("")
    return lines


def bench_small_flushes(work: Path, args: argparse.Namespace) -> list[str]:
    """Training-loop pattern: ``--small-batches`` batches of ~1000 rows, each flushed at once."""
    data = random_trajectories(args.small_batches * 1000, 20)
    parts = batches(data, 1000)
    path = work / "small.zarr"

    def run() -> None:
        with ReplayStore.create(path, observation_size=OBS, action_size=ACT, overwrite=True) as store:
            for batch in parts:
                store.append(batch)
                store.flush()

    seconds, _ = _median_time(run, args.repeats, setup=lambda: shutil.rmtree(path, ignore_errors=True))
    rows = sum(b.num_transitions for b in parts)
    return [f"Small batches flushed one by one (training-loop pattern): {len(parts)} batches of "
            f"{rows // len(parts)} rows, {seconds / len(parts) * 1e3:.1f} ms per append+flush, "
            f"{rows / seconds / 1e6:.2f} M transitions/s.", ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--length", type=int, default=1000, help="steps per trajectory (D4RL: 1000)")
    parser.add_argument("--batch-rows", type=int, default=100_000, help="rows per appended batch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", choices=("random", "hopper", "both"), default="both")
    parser.add_argument("--small-batches", type=int, default=100)
    parser.add_argument("--skip-minari", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-store-"))
    lines: list[str] = []
    try:
        if args.data in ("random", "both"):
            lines += bench_one("random", random_trajectories(args.rows, args.length), work, args)
        if args.data in ("hopper", "both"):
            lines += bench_one("hopper", hopper_trajectories(args.rows, args.length), work, args)
        if args.small_batches:
            lines += bench_small_flushes(work, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
