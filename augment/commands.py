"""``augment dydiff`` and ``augment diagnose dydiff``: options -> config dataclasses -> library calls.

* :func:`run_dydiff` trains (or loads from cache) the world models and the trajectory diffusion model,
  then trains a learner through :func:`baselines.loop.train` with DyDiff rollouts every
  ``rollout_interval`` updates; the run directory holds the synthetic store.
* :func:`run_diagnose` is the Appendix D.3 / E.5 experiment against MuJoCo (:mod:`augment.diagnose`).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

from augment.generators.dydiff import (
    DYNAMICS_MODES,
    FILTERS,
    ITERATION_RULES,
    REWARD_CLIPS,
    DyDiffConfig,
    DyDiffGenerator,
)
from augment.profiles import profile_banner, resolve_profile

LEARNER_CHOICES = ("td3bc", "cql", "iql")


def _echo(quiet: bool, text: str) -> None:
    if not quiet:
        click.echo(text)


def _prepare(learner: str, dataset_name: str, profile: str | None, *, progress: bool) -> tuple[str, Any]:
    """Check the learner, resolve the profile (printing its banner) and load the dataset.

    Returns (profile name, OfflineDataset); bad names fail before any dataset is built.
    """
    from baselines.learner_names import check_learner
    from stores.datasets import load_dataset

    check_learner(learner)
    profile = resolve_profile(profile)
    banner = profile_banner(profile)
    if banner:
        _echo(not progress, banner)
    return profile, load_dataset(dataset_name, profile=profile, progress=progress)


def dydiff_config(dataset_name: str, *, profile: str, filter: str | None = None,
                  iterations: int | None = None, rollout_length: int | None = None,
                  real_ratio: float | None = None, rollout_batch: int | None = None,
                  rollout_interval: int | None = None, eta: float | None = None,
                  iteration_rule: str | None = None, dynamics: str | None = None,
                  sdedit_sigma: float | None = None, max_synthetic: int | None = None,
                  reward_clip: str | None = None, state_box: float | None = None) -> DyDiffConfig:
    """Table 4 defaults for the dataset and profile (:meth:`DyDiffConfig.for_profile`) with overrides.

    ``sdedit_sigma`` 0 turns SDEdit starts off; ``state_box`` < 0 turns the state box off."""
    cfg = DyDiffConfig.for_profile(profile, dataset_name)
    overrides = {k: v for k, v in {
        "filter": filter, "iterations": iterations, "rollout_length": rollout_length,
        "real_ratio": real_ratio, "rollout_batch": rollout_batch, "rollout_interval": rollout_interval,
        "eta": eta, "iteration_rule": iteration_rule, "dynamics": dynamics, "sdedit_sigma": sdedit_sigma,
        "max_synthetic": max_synthetic, "reward_clip": reward_clip, "state_box": state_box}.items()
        if v is not None}
    if overrides.get("sdedit_sigma") == 0:  # 0 turns SDEdit starts off (the cpu profile has them on)
        overrides["sdedit_sigma"] = None
    if "state_box" in overrides and overrides["state_box"] < 0:  # "off" (a margin is >= 0)
        overrides["state_box"] = None
    if "rollout_batch" in overrides:
        overrides["sample_batch"] = min(cfg.sample_batch, int(overrides["rollout_batch"]))
    return dataclasses.replace(cfg, **overrides) if overrides else cfg


def train_config(cfg: DyDiffConfig, *, profile: str, seed: int, steps: int | None = None,
                 **overrides: Any) -> Any:
    """The loop's :class:`baselines.loop.TrainConfig`: the profile's learner budget (``steps``, None = the
    profile's; evaluation schedule; ``overrides`` of other TrainConfig fields) with DyDiff's batch, real
    ratio, rollout schedule and synthetic buffer. TrainConfig is the one owner of the learner budget."""
    from baselines.loop import TrainConfig

    return TrainConfig.for_profile(
        profile, **{**overrides, "steps": steps, "batch_size": cfg.batch_size, "real_ratio": cfg.real_ratio,
                    "seed": seed, "rollout_interval": cfg.rollout_interval,
                    "rollout_batch": cfg.rollout_batch, "max_synthetic": cfg.max_synthetic})


def make_dydiff_generator(dataset: Any, cfg: DyDiffConfig, *, progress: bool = True,
                          world_config: Any | None = None, diffusion_config: Any | None = None,
                          ) -> DyDiffGenerator:
    """A fitted :class:`DyDiffGenerator` for ``dataset`` (models from the cache when present)."""
    gen = DyDiffGenerator(cfg, world_config=world_config, diffusion_config=diffusion_config,
                          progress=progress)
    gen.fit(dataset)
    return gen


def record_store_attrs(run_dir: Path, generator: DyDiffGenerator, dataset: Any, *, learner: str,
                       seed: int) -> None:
    """Write the generator's attributes (M, filter, eta, ...) into the run's ``synthetic.zarr``.

    Called before training (creating the store, which the loop then opens for appending, so even an
    interrupted run's store says how it was made) and again after it.
    """
    from stores.replay import ReplayStore

    path = Path(run_dir) / "synthetic.zarr"
    from baselines.loop import dataset_store_attrs

    attrs = {**dataset_store_attrs(dataset), "learner": learner, "seed": seed, **generator.store_attrs()}
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        ReplayStore.create(path, observation_size=dataset.observation_size,
                           action_size=dataset.action_size, attrs=attrs).close()
        return
    with ReplayStore.open(path, mode="a") as store:
        store.update_attrs(**attrs)


def run_dydiff(learner: str, dataset_name: str, *, profile: str | None = None, seed: int = 0,
               filter: str | None = None, iterations: int | None = None, rollout_length: int | None = None,
               real_ratio: float | None = None, steps: int | None = None, out: Path | None = None,
               iteration_rule: str | None = None, dynamics: str | None = None,
               sdedit_sigma: float | None = None, reward_clip: str | None = None,
               state_box: float | None = None, progress: bool = True) -> tuple[Any, Path]:
    """Fit DyDiff's models and train ``learner`` on real + DyDiff data; returns (RunResult, run_dir).

    ``steps``: learner updates (None: the profile's TrainConfig budget, the same as ``augment train``).
    """
    profile, dataset = _prepare(learner, dataset_name, profile, progress=progress)
    cfg = dydiff_config(dataset.name, profile=profile, filter=filter, iterations=iterations,
                        rollout_length=rollout_length, real_ratio=real_ratio,
                        iteration_rule=iteration_rule, dynamics=dynamics, sdedit_sigma=sdedit_sigma,
                        reward_clip=reward_clip, state_box=state_box)
    run_dir = Path(out) if out is not None else (
        Path("runs") / f"dydiff-{learner}-{dataset.name}-{profile}-s{seed}")
    config = train_config(cfg, profile=profile, seed=seed, steps=steps)
    result = train_with_dydiff(dataset, learner, cfg, config, run_dir, progress=progress)
    return result, run_dir


def train_with_dydiff(dataset: Any, learner: str, cfg: DyDiffConfig, config: Any, run_dir: Path, *,
                      progress: bool = True, extra_config: dict[str, Any] | None = None,
                      world_config: Any | None = None, diffusion_config: Any | None = None) -> Any:
    """Fit (or load) DyDiff's models for ``dataset`` and run :func:`baselines.loop.train` with them.

    ``config`` is the loop's TrainConfig (its rollout schedule should come from ``cfg``, see
    :func:`train_config`); world_config / diffusion_config: the models' configs (None: the profile's).
    Returns the loop's RunResult; the store's attributes name DyDiff's settings. Bad inputs
    (:func:`baselines.preflight.check_train_inputs`) fail with a UserInputError before anything is fitted
    or written.
    """
    from baselines.loop import train
    from baselines.preflight import check_train_inputs

    # every check of the run (learner budget, --out, device, data magnitudes, env fit) before the models
    # are fitted or the run's synthetic store is created: bad input costs nothing and leaves nothing
    check_train_inputs(dataset, config, run_dir)
    quiet = not progress
    for line in cfg.explain():
        _echo(quiet, line)
    t0 = time.perf_counter()
    generator = DyDiffGenerator(cfg, world_config=world_config, diffusion_config=diffusion_config,
                                progress=progress)
    note = getattr(generator.diffusion_config(), "scaling_note", lambda: None)()
    if note:
        _echo(quiet, f"  diffusion model: {note}")
    generator.fit(dataset)
    if dataset.env_id is None and getattr(config, "eval_env", None) is None:  # env-less data
        from augment.generators.data_termination import apply_data_termination

        termination = apply_data_termination(generator.world, dataset)
        extra_config = {**(extra_config or {}), "termination": termination}
        _echo(quiet, f"dataset '{dataset.name}' names no environment: online evaluation skipped (offline "
                     f"diagnostics in results.json); termination: {termination['rule']}")
    fit_seconds = time.perf_counter() - t0
    _echo(quiet, f"world + diffusion models ready in {fit_seconds:.1f} s "
                 f"({generator.network_evaluations()['total']} network evaluations per trajectory)")
    extra = {**(extra_config or {}), "dydiff": cfg.to_json(), "generator": generator.store_attrs(),
             "world_model": dataclasses.asdict(generator.world_config()),
             "diffusion": dataclasses.asdict(generator.diffusion_config()),
             "model_fit_seconds": fit_seconds}
    record_store_attrs(run_dir, generator, dataset, learner=learner, seed=int(config.seed))
    result = train(dataset, learner, config, run_dir, generator=generator, progress=progress,
                   extra_config=extra)
    record_store_attrs(run_dir, generator, dataset, learner=learner, seed=int(config.seed))
    return result


def run_diagnose(dataset_name: str, *, profile: str | None = None, learner: str = "td3bc",
                 policy: Path | None = None, target_score: float | None = None,
                 policy_steps: int | None = None, starts: int = 64, max_iterations: int = 3,
                 iteration_rule: str | None = None, dynamics: str | None = None,
                 sdedit_sigma: float | None = None, seed: int = 0, out: Path | None = None,
                 progress: bool = True) -> tuple[Any, Path]:
    """The fixed Appendix D.3 / E.5 experiment: DyDiff's rollouts per M against the closed-loop MuJoCo
    rollout of the same policy (:mod:`augment.diagnose`).

    policy: a saved learner (``model.d3`` or its run directory); None trains ``learner`` on the real data
    until ``target_score`` (None: the profile's :class:`PolicyTarget`) or ``policy_steps`` updates (cap),
    saving it as ``policy.d3`` in the output directory. The rollout settings default to the dataset's
    DyDiffConfig (``iteration_rule``, ``dynamics``, ``sdedit_sigma`` override them).
    """
    from augment.diagnose import (
        DiagnoseConfig,
        PolicyTarget,
        load_policy,
        run_diagnosis,
        train_policy_to_score,
        write_diagnosis,
    )
    from baselines.learners import rollout_policy

    profile, dataset = _prepare(learner, dataset_name, profile, progress=progress)
    cfg = dydiff_config(dataset.name, profile=profile, iteration_rule=iteration_rule, dynamics=dynamics,
                        sdedit_sigma=sdedit_sigma)
    out_dir = Path(out) if out is not None else (
        Path("runs") / f"diagnose-dydiff-{dataset.name}-{profile}-s{seed}")
    target = PolicyTarget.for_profile(profile)
    if target_score is not None or policy_steps is not None:
        target = dataclasses.replace(target, score=target.score if target_score is None else target_score,
                                     max_steps=target.max_steps if policy_steps is None else policy_steps)
    dcfg = DiagnoseConfig(starts=starts, max_iterations=max_iterations, seed=seed,
                          policy_steps=target.max_steps, iteration_rule=cfg.iteration_rule,
                          dynamics=cfg.dynamics, sdedit_sigma=cfg.sdedit_sigma)
    generator = make_dydiff_generator(dataset, cfg, progress=progress)
    if policy is not None:
        algo, learner = load_policy(Path(policy))
        policy_record: dict[str, Any] = {"path": str(policy), "learner": learner}
    else:
        algo, policy_record = train_policy_to_score(dataset, learner, target, seed=seed, progress=progress)
        out_dir.mkdir(parents=True, exist_ok=True)
        algo.save(str(out_dir / "policy.d3"))
        policy_record["path"] = str(out_dir / "policy.d3")
        if not policy_record["reached"]:
            click.echo(f"WARNING: the learning policy did NOT reach the target score {target.score:g}: "
                       f"{policy_record['score']:.1f} after {policy_record['steps']:,} updates (the cap); "
                       "the diagnostics below use this weaker policy", err=True)
        else:
            _echo(not progress, f"learning policy: {learner} reached {policy_record['score']:.1f} "
                                f"(target {target.score:g}) after {policy_record['steps']:,} updates")
    result = run_diagnosis(dataset, rollout_policy(algo, learner), generator.world, generator.diffusion, dcfg)
    result.meta.update({"learner": learner, "policy": policy_record, "profile": profile, "seed": seed,
                        "diffusion_horizon": int(generator.diffusion.horizon),
                        "diffusion_train_steps": int(generator.diffusion.config.train_steps),
                        "iteration_rule": cfg.iteration_rule, "dynamics": cfg.dynamics,
                        "sdedit_sigma": cfg.sdedit_sigma})
    write_diagnosis(result, out_dir)
    return result, out_dir


def train_policy(dataset: Any, learner: str, steps: int, *, seed: int = 0, progress: bool = True) -> Any:
    """``steps`` updates of ``learner`` on the real transitions only; returns its rollout policy."""
    from tqdm import tqdm

    from baselines.learners import make_learner, rollout_policy
    from baselines.sampler import MixedSampler
    from baselines.seeding import derive_seed, seed_everything

    seed_everything(seed)
    algo = make_learner(learner, dataset, seed=seed, total_steps=steps)
    sampler = MixedSampler(dataset.transitions, batch_size=256, real_ratio=1.0,
                           seed=derive_seed(seed, "diagnose-sampler"))
    for _ in tqdm(range(steps), desc=f"{learner} policy", disable=not progress, leave=False):
        algo.update(sampler.sample())
    return rollout_policy(algo, learner)


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    keys = list(rows[0])
    width = {k: max(len(k), *(len(_fmt(r.get(k))) for r in rows)) for k in keys}
    lines = ["  ".join(k.rjust(width[k]) for k in keys)]
    lines += ["  ".join(_fmt(r.get(k)).rjust(width[k]) for k in keys) for r in rows]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if not np.isfinite(value) else f"{value:.4g}"
    return str(value)


# ----------------------------------------------------------------------------------------------------
# click
# ----------------------------------------------------------------------------------------------------

@click.command("dydiff")
@click.option("--policy", "learner", type=click.Choice(LEARNER_CHOICES), required=True,
              help="Base offline RL learner DyDiff augments.")
@click.option("--dataset", required=True, help="Dataset name or alias (augment datasets list), or a file.")
@click.option("--profile", default=None, help="smoke | cpu | paper (default: paper with CUDA, else cpu).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--filter", "filter_kind", type=click.Choice(FILTERS), default=None,
              help="Reward filter (default softmax, as in the paper).")
@click.option("--iterations", "-M", type=int, default=None, help="Refinement iterations M (2; 1 on maze2d).")
@click.option("--rollout-length", "-L", type=int, default=None, help="Rollout length L (paper 100).")
@click.option("--real-ratio", type=float, default=None, help="Share of real data per batch (0.6).")
@click.option("--steps", type=int, default=None,
              help="Learner updates (the profile's training budget, as `augment train`).")
@click.option("--iteration-rule", type=click.Choice(ITERATION_RULES), default=None,
              help="replace (paper text; default at smoke/paper) or average (official code: (new + old) / 2; "
                   "default at cpu, the winner of the cpu diagnose).")
@click.option("--dynamics", type=click.Choice(DYNAMICS_MODES), default=None,
              help="Single-step model: sample (default at smoke/paper) or mean (elite mean, official code; "
                   "default at cpu).")
@click.option("--sdedit-sigma", type=float, default=None,
              help="Start each refinement from the previous states noised to this sigma (SDEdit); 0 turns it "
                   "off. Default: 0.5 at cpu, off at smoke/paper.")
@click.option("--reward-clip", type=click.Choice(REWARD_CLIPS), default=None,
              help="none (the paper; default) or data: clip the reward model's predictions to the dataset's "
                   "reward range (a guard for sparse rewards such as maze2d's).")
@click.option("--state-box", type=float, default=None, metavar="MARGIN",
              help="Cut each rollout before its first state outside the data's per-dimension box, widened by "
                   "MARGIN times its width (0: the exact box; negative or unset: off, the paper).")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Run directory.")
@click.option("--quiet", is_flag=True, help="No progress bars or banners.")
def dydiff_command(learner: str, dataset: str, profile: str | None, seed: int, filter_kind: str | None,
                   iterations: int | None, rollout_length: int | None, real_ratio: float | None,
                   steps: int | None, iteration_rule: str | None, dynamics: str | None,
                   sdedit_sigma: float | None, reward_clip: str | None, state_box: float | None,
                   out: Path | None, quiet: bool) -> None:
    """Train LEARNER on DATASET augmented with DyDiff rollouts (Algorithm 1 of the DyDiff paper).

    \b
    Example:
      augment dydiff --policy td3bc --dataset hopper-medium-replay --profile cpu
    """
    result, run_dir = run_dydiff(learner, dataset, profile=profile, seed=seed, filter=filter_kind,
                                 iterations=iterations, rollout_length=rollout_length,
                                 real_ratio=real_ratio, steps=steps, out=out, iteration_rule=iteration_rule,
                                 dynamics=dynamics, sdedit_sigma=sdedit_sigma, reward_clip=reward_clip,
                                 state_box=state_box, progress=not quiet)
    summary = _run_summary(result, run_dir)
    click.echo(_table([summary]))
    click.echo(f"run directory: {run_dir}")


def _run_summary(result: Any, run_dir: Path) -> dict[str, Any]:
    """A one-row table: final score, rounds, synthetic transitions in the store, wall-time shares."""
    from stores.replay import ReplayStore

    row: dict[str, Any] = {}
    row["steps"] = int(result.steps)
    row["normalized"] = float(result.final_normalized)
    row["return"] = float(result.final_return)
    row["rounds"] = int(result.rounds)
    store_path = Path(run_dir) / "synthetic.zarr"
    if store_path.exists():
        with ReplayStore.open(store_path) as store:
            row["synthetic"] = len(store)
    times = getattr(result, "times", None)
    if isinstance(times, dict) and times.get("total"):
        for key in ("generate", "update", "evaluate"):
            if key in times:
                row[f"{key} %"] = 100.0 * float(times[key]) / float(times["total"])
        row["total s"] = float(times["total"])
    return row


@click.group("diagnose")
def diagnose_group() -> None:
    """Diagnostics of generators against the real simulator."""


@diagnose_group.command("dydiff")
@click.option("--dataset", required=True, help="A MuJoCo locomotion dataset (hopper/walker2d/halfcheetah).")
@click.option("--profile", default=None, help="smoke | cpu | paper.")
@click.option("--policy", "policy_path", type=click.Path(path_type=Path), default=None,
              help="A saved learner (a run's model.d3, or the run directory). Default: train one.")
@click.option("--learner", type=click.Choice(LEARNER_CHOICES), default="td3bc", show_default=True,
              help="Learner to train when no --policy is given.")
@click.option("--target-score", type=float, default=None,
              help="Normalized score the trained policy must reach (smoke 5, cpu 12, paper 50).")
@click.option("--policy-steps", type=int, default=None,
              help="Cap on its updates (smoke 50, cpu 50k, paper 300k); a miss is reported loudly.")
@click.option("--starts", type=int, default=64, show_default=True, help="Real start states.")
@click.option("--max-iterations", type=int, default=3, show_default=True, help="Largest M (curves 0..M).")
@click.option("--iteration-rule", type=click.Choice(ITERATION_RULES), default=None,
              help="replace (paper text) or average (official code); default: DyDiffConfig's.")
@click.option("--dynamics", type=click.Choice(DYNAMICS_MODES), default=None,
              help="sample or mean (elite mean); default: DyDiffConfig's.")
@click.option("--sdedit-sigma", type=float, default=None, help="SDEdit start level (default off).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Output directory.")
@click.option("--quiet", is_flag=True, help="No progress bars or banners.")
def diagnose_dydiff_command(dataset: str, profile: str | None, policy_path: Path | None, learner: str,
                            target_score: float | None, policy_steps: int | None, starts: int,
                            max_iterations: int, iteration_rule: str | None, dynamics: str | None,
                            sdedit_sigma: float | None, seed: int, out: Path | None, quiet: bool) -> None:
    """DyDiff's rollouts per M against the closed-loop MuJoCo rollout of the same policy (Sec. 4.3,
    App. D.3/E.5), their one-step consistency, and the open-loop replay (secondary)."""
    result, out_dir = run_diagnose(dataset, profile=profile, learner=learner, policy=policy_path,
                                   target_score=target_score, policy_steps=policy_steps, starts=starts,
                                   max_iterations=max_iterations, iteration_rule=iteration_rule,
                                   dynamics=dynamics, sdedit_sigma=sdedit_sigma, seed=seed, out=out,
                                   progress=not quiet)
    click.echo(f"closed-loop reference: {result.meta.get('learner')} in MuJoCo from the same s_0 "
               f"({100 * result.reference_terminated:.0f}% fell within L = {result.rollout_length}); "
               f"rollouts: {result.meta.get('variant')}")
    click.echo(_table(result.summary_rows()))
    beats = result.refined_beats_single_step()
    if beats:
        click.echo("E_L below M = 0's: "
                   + ", ".join(f"M={m} {'yes' if ok else 'no'}" for m, ok in beats.items()))
    if result.dataset_windows is not None:
        click.echo("reference: the dataset's own windows under their recorded actions")
        horizons = [t for t in (1, 5, 10, 25, 50, 100) if t <= result.rollout_length]
        rows = [{"predictor": name, **{f"e@{t}": errs[t - 1] for t in horizons}, "e@L": errs[-1]}
                for name, errs in result.dataset_windows.items()]
        click.echo(_table(rows))
    click.echo(f"wrote {out_dir / 'diagnose.json'} and {out_dir / 'diagnose.png'}")


def register(group: click.Group) -> None:
    """Add ``dydiff`` and the ``diagnose`` group to the ``augment`` CLI (other rooms may add to it)."""
    if "dydiff" not in group.commands:
        group.add_command(dydiff_command)
    existing = group.commands.get("diagnose")
    if isinstance(existing, click.Group):
        existing.add_command(diagnose_dydiff_command)
    else:
        group.add_command(diagnose_group)


__all__ = ["dydiff_config", "make_dydiff_generator", "register", "run_diagnose", "run_dydiff",
           "train_config", "train_policy", "train_with_dydiff"]
