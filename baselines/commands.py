"""``augment train`` and ``augment compare``: parse options -> config -> library call -> short table."""

from __future__ import annotations

import math
from pathlib import Path

import click

from baselines.learner_names import LEARNERS
from stores.errors import UserInputError


def _fmt(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _echo_profile(profile: str, summary: str, quiet: bool) -> None:
    from augment.profiles import profile_banner

    banner = profile_banner(profile)
    if banner and not quiet:
        click.echo(banner, err=True)
    if not quiet:
        click.echo(f"training budget: {summary}", err=True)


def _parse_seeds(text: str) -> list[int]:
    """``0,1,2`` or ``0-4`` (inclusive) -> list of ints."""
    try:
        if "-" in text and "," not in text:
            lo, hi = (int(t) for t in text.split("-", 1))
            return list(range(lo, hi + 1))
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError as exc:
        raise UserInputError(f"--seeds takes '0,1,2' or '0-4', got '{text}'") from exc


@click.command("train")
@click.option("--policy", "learner", type=click.Choice(LEARNERS), required=True, help="Offline RL learner.")
@click.option("--dataset", required=True, help="Dataset name/alias (hopper-medium-replay), .hdf5/.npz path, "
                                               "or minari:<id>.")
@click.option("--synthetic", "synthetic_store", default=None, type=click.Path(path_type=Path),
              help="A ReplayStore (.zarr) of synthetic transitions to mix in at --real-ratio.")
@click.option("--real-ratio", type=float, default=None, help="alpha: real fraction of each batch [0.6].")
@click.option("--steps", type=int, default=None, help="Learner updates (default: the profile's).")
@click.option("--eval-every", type=int, default=None, help="Updates between evaluations.")
@click.option("--eval-episodes", type=int, default=None, help="Episodes per evaluation.")
@click.option("--checkpoint-every", type=int, default=None, help="Updates between checkpoints.")
@click.option("--batch-size", type=int, default=None, help="Batch size [256].")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--profile", default=None, help="smoke | cpu | paper (default: cpu without CUDA).")
@click.option("--env", "eval_env", default=None, help="Env id to evaluate in (default: the dataset's).")
@click.option("--device", default="cpu:0", show_default=True, help="torch device for d3rlpy.")
@click.option("--out", "out", default=None, type=click.Path(path_type=Path),
              help="Run directory [runs/<policy>-<dataset>-seed<S>]; an unfinished one is resumed.")
@click.option("--overwrite", is_flag=True, help="Delete --out first instead of resuming it (only a run "
                                                "directory augment made, never while a run uses it).")
@click.option("--quiet", is_flag=True, help="No progress bars or banners.")
def train_cmd(learner: str, dataset: str, synthetic_store: Path | None, real_ratio: float | None,
              steps: int | None, eval_every: int | None, eval_episodes: int | None,
              checkpoint_every: int | None, batch_size: int | None, seed: int, profile: str | None,
              eval_env: str | None, device: str, out: Path | None, overwrite: bool, quiet: bool) -> None:
    """Train a d3rlpy learner on a dataset (optionally mixed with a synthetic store) and evaluate it.

    Writes config.json, metrics.csv, results.json, checkpoints/ and model.d3 to --out.
    """
    from augment.profiles import resolve_profile
    from baselines.compare import load_synthetic_store
    from baselines.loop import TrainConfig, train
    from baselines.preflight import check_device, check_run_dir, check_train_inputs
    from stores.datasets import load_dataset

    profile = resolve_profile(profile)
    config = TrainConfig.for_profile(
        profile, steps=steps, eval_every=eval_every, eval_episodes=eval_episodes, seed=seed,
        real_ratio=real_ratio, checkpoint_every=checkpoint_every, batch_size=batch_size, device=device,
        eval_env=eval_env)
    config.validate()
    run_dir = out or Path("runs") / f"{learner}-{Path(dataset).stem}-seed{seed}"
    check_run_dir(run_dir, overwrite=overwrite)  # the cheap checks before a dataset is loaded or built
    check_device(device)
    data = load_dataset(dataset, profile=profile, progress=not quiet)
    synthetic = load_synthetic_store(synthetic_store) if synthetic_store is not None else None
    check_train_inputs(data, config, run_dir, overwrite=overwrite, synthetic=synthetic)
    _echo_profile(profile, config.scaled_summary(), quiet)  # banners only once the run can start
    extra = {"synthetic_store": str(synthetic_store)} if synthetic_store is not None else None
    if data.env_id is None and eval_env is None:  # env-less data: train and save, no online evaluation
        extra = {**(extra or {}), "model_diagnostics": _store_diagnostics(synthetic_store)}
        if not quiet:
            click.echo(f"dataset '{data.name}' names no environment: online evaluation skipped (pass --env "
                       "to evaluate); offline diagnostics go to results.json", err=True)
    r = train(data, learner, config, run_dir, progress=not quiet, synthetic=synthetic, overwrite=overwrite,
              extra_config=extra)
    t = r.times
    click.echo(f"run dir            {run_dir}")
    click.echo(f"steps              {r.steps:,}")
    click.echo(f"final normalized   {_fmt(r.final_normalized)}  (return {_fmt(r.final_return)})")
    click.echo(f"last-5 normalized  {_fmt(r.last5_normalized)}  (return {_fmt(r.last5_return)})")
    click.echo(f"wall time          {_fmt(t['total'])} s  (update {_fmt(t['update'])}, evaluate "
               f"{_fmt(t['evaluate'])}, generate {_fmt(t['generate'])}; "
               f"{_fmt(r.updates_per_s, 0)} updates/s)")


def _store_diagnostics(path: Path | None) -> dict | None:
    """The model diagnostics a synthetic store recorded (``augment generate`` writes them), or None."""
    if path is None:
        return None
    from stores.replay import ReplayStore

    with ReplayStore.open(path) as store:
        return store.attrs.get("model_diagnostics")


def _parse_runs(items: tuple[str, ...]) -> dict[str, list[Path]]:
    runs: dict[str, list[Path]] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise UserInputError(f"--run takes ARM=RUN_DIR, got '{item}'")
        runs.setdefault(name, []).append(Path(path))
    return runs


@click.command("compare")
@click.option("--policy", "learner", type=click.Choice(LEARNERS), default="td3bc", show_default=True)
@click.option("--dataset", required=True, help="Dataset name/alias or path (as for `augment train`).")
@click.option("--arm", "arms", multiple=True,
              help="Arm to run: base | synthetic:STORE | a registered arm (repeatable; the first is the "
                   "reference) [base].")
@click.option("--run", "runs", multiple=True, help="Collect a finished run dir as ARM=DIR (repeatable).")
@click.option("--seeds", default="0,1,2", show_default=True, help="Seeds: '0,1,2' or '0-4'.")
@click.option("--profile", default=None, help="smoke | cpu | paper (default: cpu without CUDA).")
@click.option("--steps", type=int, default=None, help="Learner updates per run (default: the profile's).")
@click.option("--eval-every", type=int, default=None)
@click.option("--eval-episodes", type=int, default=None)
@click.option("--real-ratio", type=float, default=None, help="alpha for synthetic arms [0.6].")
@click.option("--metric", type=click.Choice(["last5", "final"]), default="last5", show_default=True,
              help="Per-seed score: mean of the last 5 evaluations, or the last one.")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Seeds run in parallel processes.")
@click.option("--out", "out", default=None, type=click.Path(path_type=Path),
              help="Output folder [runs/compare-<policy>-<dataset>]; finished runs in it are reused.")
@click.option("--quiet", is_flag=True, help="No progress bars or banners.")
def compare_cmd(learner: str, dataset: str, arms: tuple[str, ...], runs: tuple[str, ...], seeds: str,
                profile: str | None, steps: int | None, eval_every: int | None, eval_episodes: int | None,
                real_ratio: float | None, metric: str, jobs: int, out: Path | None, quiet: bool) -> None:
    """Did augmentation help? Runs (or collects) arms x seeds and reports mean +/- std, IQM with 95%
    bootstrap CI, the difference to the first arm with its CI and a Welch p-value; writes compare.md,
    compare.csv, compare.json, curves.png and finals.png.
    """
    from augment.profiles import resolve_profile
    from baselines.compare import compare, resolve_arm
    from baselines.loop import TrainConfig
    from stores.datasets import load_dataset

    profile = resolve_profile(profile)
    overrides = {"steps": steps, "eval_every": eval_every, "eval_episodes": eval_episodes,
                 "real_ratio": real_ratio}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    config = TrainConfig.for_profile(profile, **overrides)
    config.validate()
    existing = _parse_runs(runs)
    seed_list = _parse_seeds(seeds)
    arm_specs = list(arms) or ([] if existing else ["base"])
    for spec in arm_specs:
        resolve_arm(spec)  # unknown arms fail before anything is built or printed
    if arm_specs:
        load_dataset(dataset, profile=profile, progress=not quiet)  # build once before any worker starts
    _echo_profile(profile, config.scaled_summary(), quiet)
    out_dir = out or Path("runs") / f"compare-{learner}-{Path(dataset).stem}"
    result = compare(arm_specs, dataset=dataset, learner=learner, seeds=seed_list, profile=profile,
                     out_dir=out_dir, jobs=jobs, overrides=overrides, existing=existing, metric=metric,
                     progress=not quiet)
    click.echo(result.files["markdown"].read_text())
    click.echo("wrote " + ", ".join(str(p) for p in result.files.values()))


def register(group: click.Group) -> None:
    """Add ``train`` and ``compare`` to the ``augment`` group."""
    group.add_command(train_cmd)
    group.add_command(compare_cmd)
