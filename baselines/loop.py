"""The training loop every generator plugs into.

:func:`train` runs ``config.steps`` d3rlpy updates (``algo.update(batch)``) on batches from a
:class:`~baselines.sampler.MixedSampler` (real ratio alpha, REFERENCE Sec. 1), and

* every ``rollout_interval`` updates (and once before the first update) hands the current policy to a
  :class:`~baselines.protocols.Generator` (DyDiff Algorithm 1, lines 4-9: rollouts with a ~ pi(.|s),
  Eq. 8), appends what it returns to the run's ReplayStore ``synthetic.zarr`` (flushed each round) and
  to the sampler's synthetic pool;
* every ``eval_every`` updates (and at the end) evaluates the deterministic policy with
  :func:`baselines.evaluate.evaluate` and writes a ``metrics.csv`` row;
* every ``checkpoint_every`` updates saves weights, optimiser states, counters, timers and every RNG state
  (sampler, generator, torch, NumPy, ``random``) plus the synthetic pool, so a run resumed from its last
  checkpoint reaches the same final result as one that never stopped;
* records wall time spent generating, updating (sampling included) and evaluating.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from augment.profiles import by_profile, resolve_profile
from augment.progress import progress_bar
from baselines.evaluate import EvalResult, evaluate, normalized_scores
from baselines.learners import LearnerPolicy, check_learner, make_learner, rollout_policy
from baselines.preflight import (
    check_finite_losses,
    check_train_inputs,
    checkpoint_write_errors,
    guarded_run_dir,
)
from baselines.protocols import Generator
from baselines.runs import (
    MetricsWriter,
    checkpoint_dir,
    latest_checkpoint,
    mark_latest,
    read_json,
    read_metrics,
    write_json,
)
from baselines.sampler import MixedSampler
from baselines.seeding import capture_global_rng, derive_seed, restore_global_rng, seed_everything
from stores.errors import UserInputError
from stores.schema import OfflineDataset

#: What config.json / results.json say when the dataset names no environment (env-less data).
NO_EVALUATION = ("skipped: the dataset names no environment to evaluate in (pass --env to evaluate); "
                 "offline diagnostics (learner losses, model holdout errors) are in results.json")


def dataset_store_attrs(dataset: OfflineDataset) -> dict[str, Any]:
    """The store format's provenance attributes of the real dataset a run's synthetic store belongs to:
    ``source_dataset``, ``source_hash``, ``env_id`` and ``normalization`` (its statistics, JSON-native)."""
    return {"source_dataset": dataset.name, "source_hash": dataset.content_hash, "env_id": dataset.env_id,
            "normalization": dataset.stats.to_json()}


@dataclass
class TrainConfig:
    """Budget and schedule of one training run (counts are learner updates unless said otherwise).

    steps: total updates. batch_size: B. real_ratio: alpha, the real fraction of each batch.
    eval_every / eval_episodes / eval_envs: evaluation schedule, episodes, envs stepped together.
    seed: the run's one seed (networks, sampler, generator, evaluation, global RNGs).
    rollout_interval: updates between generator rounds. rollout_batch: trajectories asked per round.
    max_synthetic: FIFO capacity of the synthetic pool (None = unbounded).
    checkpoint_every / keep_checkpoints: checkpoint schedule and how many to keep.
    device: torch device for d3rlpy. eval_env: env id to evaluate in (default: the dataset's).
    profile: the budget profile these numbers came from (recorded, not used).
    """

    steps: int = 1_000_000
    batch_size: int = 256
    real_ratio: float = 0.6
    eval_every: int = 5_000
    eval_episodes: int = 10
    eval_envs: int = 10
    seed: int = 0
    rollout_interval: int = 10_000
    rollout_batch: int = 256
    max_synthetic: int | None = 1_000_000
    checkpoint_every: int = 50_000
    keep_checkpoints: int = 2
    device: str = "cpu:0"
    eval_env: str | None = None
    profile: str = "paper"

    @classmethod
    def for_profile(cls, profile: str | None, **overrides: Any) -> TrainConfig:
        """The budget of ``profile`` (smoke / cpu / paper) with ``overrides`` (None values ignored).

        smoke: 300 updates, evaluation every 100 with 2 episodes. cpu: 50k updates, evaluation every
        2.5k with 5 episodes. paper: 1M updates, evaluation every 5k with 10 episodes (TD3+BC / IQL papers).
        """
        name = resolve_profile(profile)
        base = cls(
            steps=by_profile(name, smoke=300, cpu=50_000, paper=1_000_000),
            eval_every=by_profile(name, smoke=100, cpu=2_500, paper=5_000),
            eval_episodes=by_profile(name, smoke=2, cpu=5, paper=10),
            rollout_interval=by_profile(name, smoke=100, cpu=5_000, paper=10_000),
            rollout_batch=by_profile(name, smoke=16, cpu=128, paper=256),
            max_synthetic=by_profile(name, smoke=10_000, cpu=200_000, paper=1_000_000),
            checkpoint_every=by_profile(name, smoke=100, cpu=5_000, paper=50_000),
            profile=name,
        )
        return dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})

    def validate(self) -> None:
        """Raise :class:`UserInputError` for settings that cannot run."""
        for name in ("steps", "batch_size", "eval_every", "eval_episodes", "eval_envs", "rollout_interval",
                     "rollout_batch", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise UserInputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.real_ratio <= 1.0:
            raise UserInputError(f"real ratio must lie in [0, 1], got {self.real_ratio}")

    def scaled_summary(self) -> str:
        """One line with the numbers a scaled-down profile uses (for the user)."""
        return (f"{self.steps:,} updates of batch {self.batch_size}, evaluation every {self.eval_every:,} "
                f"updates with {self.eval_episodes} episodes, checkpoints every {self.checkpoint_every:,}")


@dataclass
class RunResult:
    """What :func:`train` returns (and ``results.json`` holds).

    final: the last evaluation; last5_normalized / last5_return: means over the last five evaluations;
    times: wall seconds spent generating / updating / evaluating / total; completed: False when
    ``stop_at`` ended the call before ``config.steps``.
    """

    run_dir: Path
    steps: int
    completed: bool
    final: EvalResult | None
    final_normalized: float
    final_return: float
    last5_normalized: float
    last5_return: float
    times: dict[str, float] = field(default_factory=dict)
    updates_per_s: float = math.nan
    num_synthetic: int = 0
    rounds: int = 0


def score_name_for(dataset: OfflineDataset, env_id: str) -> str:
    """Name to normalise scores with: the dataset's name when it has references, else the env id."""
    if not np.isnan(normalized_scores(np.zeros(1), dataset.name)).all():
        return dataset.name
    return env_id


@dataclass
class _State:
    step: int = 0
    round: int = 0
    times: dict[str, float] = field(default_factory=lambda: {"generate": 0.0, "update": 0.0,
                                                             "evaluate": 0.0, "total": 0.0})
    evals: list[dict[str, float]] = field(default_factory=list)
    loss_sum: dict[str, float] = field(default_factory=dict)
    loss_n: int = 0
    last_row_step: int = 0
    last_row_update_time: float = 0.0
    final: dict[str, Any] | None = None
    generation: dict[str, float] = field(default_factory=dict)


def round_counts(stats: Any) -> dict[str, float]:
    """The numeric counters of a generator's ``last_round`` (a dataclass or a dict; nested values such as
    per-stage seconds and booleans are left out), for summing over a run's rounds."""
    if stats is None:
        return {}
    items = dataclasses.asdict(stats) if dataclasses.is_dataclass(stats) else dict(stats)
    return {k: float(v) for k, v in items.items()
            if isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool | np.bool_)}


class _Run:
    """One training run's moving parts (kept together so checkpoints can save them)."""

    def __init__(self, dataset: OfflineDataset, learner: str, config: TrainConfig, run_dir: Path,
                 generator: Generator | None, synthetic: dict[str, np.ndarray] | None,
                 extra_config: dict[str, Any] | None) -> None:
        self.dataset, self.learner, self.config, self.run_dir = dataset, learner, config, run_dir
        self.generator = generator
        self.env_id = config.eval_env or dataset.env_id
        # env-less data (no simulator): train and save the policy, no online evaluation (NO_EVALUATION)
        self.score_name = score_name_for(dataset, self.env_id) if self.env_id is not None else None
        seed_everything(config.seed)
        self.algo = make_learner(learner, dataset, seed=config.seed, device=config.device,
                                 batch_size=config.batch_size, total_steps=config.steps)
        self.sampler = MixedSampler(dataset.transitions, batch_size=config.batch_size,
                                    real_ratio=config.real_ratio, max_synthetic=config.max_synthetic,
                                    seed=derive_seed(config.seed, "sampler"))
        if synthetic is not None:
            self.sampler.add_synthetic(synthetic)
        self.gen_rng = np.random.default_rng(derive_seed(config.seed, "generator"))
        self.eval_seed = derive_seed(config.seed, "eval")
        self.state = _State()
        self.metrics = MetricsWriter(run_dir / "metrics.csv")
        self.store: Any = None
        write_json(run_dir / "config.json", {
            "learner": learner, "train": dataclasses.asdict(config),
            "dataset": {"name": dataset.name, "env_id": dataset.env_id, "content_hash": dataset.content_hash,
                        "transitions": dataset.num_transitions, "episodes": dataset.num_episodes,
                        "provenance": dataset.provenance},
            "eval_env": self.env_id, "score_name": self.score_name,
            "evaluation": "online" if self.env_id is not None else NO_EVALUATION,
            "generator": getattr(generator, "name", None),
            "fixed_synthetic_transitions": 0 if synthetic is None else int(len(synthetic["actions"])),
            "d3rlpy_config": self.algo.config.serialize(),
            "extra": extra_config or {},
        })

    # ----------------------------------------------------------------------------------- generation
    def open_store(self) -> None:
        from stores.replay import ReplayStore

        path = self.run_dir / "synthetic.zarr"
        if path.exists():
            self.store = ReplayStore.open(path, mode="a")
        else:
            self.store = ReplayStore.create(
                path, observation_size=self.dataset.observation_size, action_size=self.dataset.action_size,
                attrs={**dataset_store_attrs(self.dataset), "learner": self.learner, "seed": self.config.seed,
                       "generator_name": getattr(self.generator, "name", "")})

    def generate(self) -> None:
        assert self.generator is not None
        t0 = time.perf_counter()
        policy = rollout_policy(self.algo, self.learner)
        batch = self.generator.generate(self.config.rollout_batch, policy, self.gen_rng,
                                        round=self.state.round, learner_step=self.state.step)
        batch.validate()
        if batch.batch_size:
            self.store.append(batch)
            self.store.flush()
            self.sampler.add_synthetic(batch.to_transitions())
        for key, value in round_counts(getattr(self.generator, "last_round", None)).items():
            self.state.generation[key] = self.state.generation.get(key, 0.0) + value
        self.state.round += 1
        self.state.times["generate"] += time.perf_counter() - t0

    # ----------------------------------------------------------------------------------- evaluation
    def evaluate(self) -> EvalResult | None:
        if self.env_id is None:
            return None  # env-less: write_row(None) records losses and counters only
        t0 = time.perf_counter()
        result = evaluate(LearnerPolicy(self.algo), self.env_id, episodes=self.config.eval_episodes,
                          seed=self.eval_seed, score_name=self.score_name, num_envs=self.config.eval_envs)
        self.state.times["evaluate"] += time.perf_counter() - t0
        return result

    def write_row(self, result: EvalResult | None) -> None:
        s = self.state
        d_steps = s.step - s.last_row_step
        d_update = s.times["update"] - s.last_row_update_time
        row: dict[str, Any] = {
            "step": s.step, "wall_time": s.times["total"], "time_generate": s.times["generate"],
            "time_update": s.times["update"], "time_evaluate": s.times["evaluate"],
            "updates_per_s": d_steps / d_update if d_update > 0 else math.nan,
            "num_synthetic": self.sampler.num_synthetic, "synthetic_added": self.sampler.synthetic_added,
            "rounds": s.round,
        }
        if result is not None:
            row.update({"eval_return_mean": result.mean, "eval_return_std": result.std,
                        "eval_normalized": result.normalized_mean,
                        "eval_length_mean": float(result.lengths.mean())})
        for k in sorted(s.loss_sum):
            row[k] = s.loss_sum[k] / max(1, s.loss_n)
        self.metrics.write(row)
        s.loss_sum, s.loss_n = {}, 0
        s.last_row_step, s.last_row_update_time = s.step, s.times["update"]
        if result is not None:
            s.evals.append({"step": s.step, "return_mean": result.mean, "normalized": result.normalized_mean})
            s.final = result.to_json()

    # ----------------------------------------------------------------------------------- checkpoints
    def save_checkpoint(self) -> None:
        ckpt = checkpoint_dir(self.run_dir, self.state.step)
        ckpt.mkdir(parents=True, exist_ok=True)
        self.algo.save_model(str(ckpt / "model.pt"))
        torch.save({
            "state": dataclasses.asdict(self.state),
            "grad_step": self.algo.grad_step,
            "sampler": self.sampler.state_dict() if self.generator is not None
            else {k: v for k, v in self.sampler.state_dict().items()
                  if k not in ("synthetic", "synthetic_birth")},
            "generator_rng": self.gen_rng.bit_generator.state,
            "global_rng": capture_global_rng(),
            "store_rows": len(self.store) if self.store is not None else 0,
        }, ckpt / "state.pt")
        mark_latest(self.run_dir, ckpt, keep=self.config.keep_checkpoints)

    def load_checkpoint(self, ckpt: Path) -> None:
        saved = torch.load(ckpt / "state.pt", weights_only=False)
        self.algo.load_model(str(ckpt / "model.pt"))
        self.algo.set_grad_step(int(saved["grad_step"]))
        sampler_state = saved["sampler"]
        if "synthetic" not in sampler_state:  # fixed pool: rebuilt from the store, only the RNG moves
            sampler_state = {**self.sampler.state_dict(), **sampler_state}
        self.sampler.load_state_dict(sampler_state)
        self.gen_rng.bit_generator.state = saved["generator_rng"]
        restore_global_rng(saved["global_rng"])
        self.state = _State(**saved["state"])
        self.metrics.truncate_after(self.state.step)
        if self.store is not None and len(self.store) > saved["store_rows"]:
            found = len(self.store)
            self.store.truncate(int(saved["store_rows"]))  # the rounds after it are generated again
            write_json(self.run_dir / "resume_note.json", {
                "checkpoint_step": self.state.step, "store_rows_at_checkpoint": saved["store_rows"],
                "store_rows_found": found,
                "note": "rounds generated after the checkpoint were cut from the store and are regenerated"})


def train(dataset: OfflineDataset, learner: str, config: TrainConfig, run_dir: Path, *,
          generator: Generator | None = None, progress: bool = True, extra_config: dict | None = None,
          synthetic: dict[str, np.ndarray] | None = None, overwrite: bool = False,
          stop_at: int | None = None) -> RunResult:
    """Train ``learner`` on ``dataset`` (plus synthetic data) and write the run directory ``run_dir``.

    generator: called every ``config.rollout_interval`` updates (see the module docstring); it must be
    ready to generate (``fit`` or ``load`` called by the caller).
    synthetic: fixed synthetic transitions (flat arrays as ``ReplayStore.load()``) mixed in at alpha.
    A run directory with a checkpoint is resumed from its latest one unless ``overwrite`` (which deletes
    it first). stop_at: end this call after that many total updates (checkpointing there), e.g. to
    split a run over several jobs; the result then has ``completed=False`` and no results.json.
    Returns a :class:`RunResult`; results.json holds the same numbers.

    Before anything is written, :func:`baselines.preflight.check_train_inputs` refuses runs that cannot
    succeed (device, env sizes, data magnitudes, --out); the run then holds the directory's lock (a second
    ``train`` on it fails at once), ``overwrite`` deletes only a run directory augment made, and a run
    that fails before its first checkpoint leaves no directory behind
    (:func:`baselines.preflight.guarded_run_dir`).
    """
    check_learner(learner)
    run_dir = Path(run_dir)
    check_train_inputs(dataset, config, run_dir, overwrite=overwrite, synthetic=synthetic)
    with guarded_run_dir(run_dir, overwrite=overwrite):
        return _train_locked(dataset, learner, config, run_dir, generator=generator, progress=progress,
                             extra_config=extra_config, synthetic=synthetic, stop_at=stop_at)


def _train_locked(dataset: OfflineDataset, learner: str, config: TrainConfig, run_dir: Path, *,
                  generator: Generator | None, progress: bool, extra_config: dict | None,
                  synthetic: dict[str, np.ndarray] | None, stop_at: int | None) -> RunResult:
    """:func:`train` inside its prepared, locked run directory."""
    if latest_checkpoint(run_dir) is not None and (run_dir / "config.json").exists():
        _check_resumable(read_json(run_dir / "config.json"), dataset, learner, config, run_dir)
    run = _Run(dataset, learner, config, run_dir, generator, synthetic, extra_config)
    if generator is not None:
        run.open_store()
    ckpt = latest_checkpoint(run_dir)
    if ckpt is not None:
        run.load_checkpoint(ckpt)
    else:
        if (run_dir / "metrics.csv").exists():
            (run_dir / "metrics.csv").unlink()  # rows of a run that never checkpointed: start clean
            run.metrics = MetricsWriter(run_dir / "metrics.csv")
        if run.store is not None and len(run.store):
            run.store.truncate(0)  # rounds of a killed run that never checkpointed are generated again
    end = config.steps if stop_at is None else min(config.steps, int(stop_at))
    s = run.state
    started = time.perf_counter()
    total_before = s.times["total"]
    bar = progress_bar(total=config.steps, initial=s.step, disable=not progress,
                       desc=f"{learner} {dataset.name}", unit="upd", dynamic_ncols=True, mininterval=0.5)
    last_bar = s.step
    sampler, algo, loss_sum = run.sampler, run.algo, s.loss_sum
    try:
        while s.step < end:
            if generator is not None and s.step % config.rollout_interval == 0:
                run.generate()
            t0 = time.perf_counter()
            losses = algo.update(sampler.sample())
            check_finite_losses(losses, s.step + 1, learner)
            s.times["update"] += time.perf_counter() - t0
            s.step += 1
            for k, v in losses.items():
                loss_sum[k] = loss_sum.get(k, 0.0) + v
            s.loss_n += 1
            at_end = s.step == config.steps
            if s.step % config.eval_every == 0 or at_end:
                s.times["total"] = total_before + time.perf_counter() - started
                result = run.evaluate()
                s.times["total"] = total_before + time.perf_counter() - started
                run.write_row(result)
                loss_sum = s.loss_sum
                if result is not None:
                    bar.set_postfix_str(f"eval {result.normalized_mean:.1f} (return {result.mean:.0f})",
                                        refresh=False)
            if s.step % config.checkpoint_every == 0 or at_end or s.step == end:
                s.times["total"] = total_before + time.perf_counter() - started
                with checkpoint_write_errors(checkpoint_dir(run_dir, s.step)):
                    run.save_checkpoint()
            if s.step - last_bar >= 100 or s.step == end:  # shown or not: it reports (augment.progress)
                bar.update(s.step - last_bar)
                last_bar = s.step
                if progress:  # the postfix text only where the bar is shown
                    shown = {k: v / s.loss_n for k, v in s.loss_sum.items()} if s.loss_n else losses
                    loss_txt = " ".join(f"{k.replace('_loss', '')} {v:.3g}" for k, v in sorted(shown.items()))
                    last_eval = f"eval {s.evals[-1]['normalized']:.1f}" if s.evals else "eval -"
                    bar.set_postfix_str(f"{loss_txt} | {last_eval}", refresh=False)
    finally:
        bar.close()
        if run.store is not None:
            run.store.close()
    s.times["total"] = total_before + time.perf_counter() - started
    completed = s.step >= config.steps
    result = _result(run, completed)
    if completed:
        algo.save(str(run_dir / "model.d3"))
        write_json(run_dir / "results.json", _results_json(run, result))
    return result


#: TrainConfig fields a resumed run must share with the run it continues.
RESUME_KEYS: tuple[str, ...] = ("seed", "batch_size", "real_ratio", "rollout_interval", "rollout_batch",
                                "max_synthetic", "steps")


def _check_resumable(saved: dict[str, Any], dataset: OfflineDataset, learner: str, config: TrainConfig,
                     run_dir: Path) -> None:
    """UserInputError when ``run_dir`` holds a run that this call cannot continue identically."""
    old = saved.get("train", {})
    diffs = [f"{k} {old.get(k)} -> {getattr(config, k)}" for k in RESUME_KEYS
             if old.get(k) != getattr(config, k)]
    if saved.get("learner") != learner:
        diffs.append(f"learner {saved.get('learner')} -> {learner}")
    if saved.get("dataset", {}).get("content_hash") != dataset.content_hash:
        diffs.append("dataset content changed")
    if diffs:
        raise UserInputError(f"{run_dir} holds a different run ({'; '.join(diffs)}); pass --overwrite to "
                             "start over or choose another --out")


def _last5(evals: list[dict[str, float]], key: str) -> float:
    vals = [e[key] for e in evals[-5:]]
    return float(np.mean(vals)) if vals else math.nan


def _result(run: _Run, completed: bool) -> RunResult:
    s = run.state
    final = None
    if s.final is not None:
        f = s.final
        final = EvalResult(
            returns=np.asarray(f["returns"], dtype=np.float64),
            lengths=np.asarray(f["lengths"], dtype=np.int64),
            mean=float(f["return_mean"]), std=float(f["return_std"]),
            normalized=np.asarray([math.nan if x is None else x for x in f["normalized"]], dtype=np.float64),
            normalized_mean=math.nan if f["normalized_mean"] is None else float(f["normalized_mean"]),
            env_id=f["env_id"], seed=int(f["seed"]), score_name=f["score_name"])
    return RunResult(
        run_dir=run.run_dir, steps=s.step, completed=completed, final=final,
        final_normalized=final.normalized_mean if final else math.nan,
        final_return=final.mean if final else math.nan,
        last5_normalized=_last5(s.evals, "normalized"), last5_return=_last5(s.evals, "return_mean"),
        times=dict(s.times),
        updates_per_s=s.step / s.times["update"] if s.times["update"] > 0 else math.nan,
        num_synthetic=run.sampler.num_synthetic, rounds=s.round)


def _results_json(run: _Run, r: RunResult) -> dict[str, Any]:
    return {
        "learner": run.learner, "dataset": run.dataset.name, "env_id": run.env_id,
        "score_name": run.score_name, "seed": run.config.seed, "profile": run.config.profile,
        "steps": r.steps, "final_normalized": r.final_normalized, "final_return": r.final_return,
        "last5_normalized": r.last5_normalized, "last5_return": r.last5_return,
        "final": r.final.to_json() if r.final else None,
        "evaluations": run.state.evals,
        "wall_time": r.times, "updates_per_s": r.updates_per_s,
        "num_synthetic": r.num_synthetic, "synthetic_added": run.sampler.synthetic_added,
        "rounds": r.rounds, "generator": getattr(run.generator, "name", None),
        "synthetic_pool": run.sampler.pool_stats(),
        "generation_counts": dict(run.state.generation),
        **({} if run.env_id is not None else {"evaluation": NO_EVALUATION,
                                               "offline_diagnostics": offline_diagnostics(run)}),
    }


def offline_diagnostics(run: _Run) -> dict[str, Any]:
    """What an env-less run reports instead of an evaluation: the learner's mean losses over the last
    metrics row, and the world model's holdout errors (raw units) of the run's generator, or those the
    synthetic store it trained on recorded (``extra_config['model_diagnostics']``)."""
    rows = read_metrics(run.run_dir / "metrics.csv")
    losses = {k: v for k, v in rows[-1].items() if k.endswith("loss")} if rows else {}
    report = getattr(getattr(run.generator, "world", None), "report", None) or {}
    model = {f"world_{k}": report[k] for k in ("holdout_next_state_mse_raw", "holdout_reward_mse_raw")
             if k in report}
    if not model:
        model = read_json(run.run_dir / "config.json").get("extra", {}).get("model_diagnostics") or {}
    return {"learner_losses": losses, "model": model, "metrics_rows": len(rows)}


def load_run(run_dir: Path) -> tuple[dict[str, Any], list[dict[str, float]]]:
    """(results.json, metrics.csv rows) of a finished run; UserInputError when it has not finished."""
    path = Path(run_dir) / "results.json"
    if not path.exists():
        raise UserInputError(f"{run_dir} holds no results.json; the run has not finished "
                             "(run `augment train ... --out` on it again to resume)")
    return read_json(path), read_metrics(Path(run_dir) / "metrics.csv")
