"""``augment plan NAME``: fit a registered planner (cached), evaluate it, write the run directory.

Options are parsed here and passed to :func:`augment.planners.run.run_planner`; nothing else happens here.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import click

from augment.planners.base import registered_planners


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if not math.isfinite(value) else f"{value:.4g}"
    return str(value)


def _overrides(variants: tuple[str, ...], sets: tuple[str, ...]) -> list[tuple[str, str | None]]:
    from augment.planners.base import parse_overrides

    items: list[tuple[str, str | None]] = []
    for v in variants:
        items += [(k, None) for k, _ in parse_overrides(v)]
    for s in sets:
        items += parse_overrides(s)
    return items


@click.command("plan")
@click.argument("name")
@click.option("--dataset", required=True, help="Dataset name/alias (hopper-medium-replay), .hdf5/.npz path, "
                                               "or minari:<id>.")
@click.option("--profile", default=None, help="smoke | cpu | paper (default: paper with CUDA, else cpu).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Training seed of the planner; also seeds acting and evaluation.")
@click.option("--variant", "variants", multiple=True,
              help="A named variant of the planner's config (repeatable), e.g. dmemm: diffuser, "
                   "no-weighting, no-tr-loss, no-rd-loss, no-tr-guide.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a config field (repeatable, or comma-separated), e.g. --set alpha=0.01.")
@click.option("--target-rtg", "target_rtg", default=None, metavar="RETURN",
              help="Trajectory Diffuser: the return-to-go to condition on (default: Table A6's per task); "
                   "the same as --set target_rtg=RETURN.")
@click.option("--episodes", type=int, default=None, help="Evaluation episodes (profile default).")
@click.option("--envs", type=int, default=None, help="Envs stepped together (profile default).")
@click.option("--max-steps", type=int, default=None, help="Cap on steps per evaluation episode.")
@click.option("--generate", type=int, default=None,
              help="Also plan this many trajectories from real start states into synthetic.zarr.")
@click.option("--env", "env_id", default=None, help="Env id to evaluate in (default: the dataset's).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Run directory [runs/plan-NAME-DATASET-PROFILE-sSEED].")
@click.option("--quiet", is_flag=True, help="No progress bars or banners.")
def plan_command(name: str, dataset: str, profile: str | None, seed: int, variants: tuple[str, ...],
                 sets: tuple[str, ...], target_rtg: str | None, episodes: int | None, envs: int | None,
                 max_steps: int | None, generate: int | None, env_id: str | None, out: Path | None,
                 quiet: bool) -> None:
    """Train diffusion planner NAME on DATASET (cached) and evaluate it as a policy.

    \b
    Planners: see `augment plan --help` below, registered in augment/planners/base.py.
    Example:
      augment plan dmemm --dataset hopper-medium-replay --profile cpu
      augment plan dmemm --dataset hopper-medium-replay --profile cpu --variant diffuser
    Writes config.json, metrics.csv and results.json (score, seconds and network calls per action).
    """
    from augment.planners.run import run_planner

    if target_rtg is not None:
        sets = (*sets, f"target_rtg={target_rtg}")
    run = run_planner(name, dataset, profile=profile, seed=seed, out=out,
                      overrides=_overrides(variants, sets), episodes=episodes, envs=envs,
                      max_steps=max_steps, generate=generate, env_id=env_id, progress=not quiet)
    r = run.results
    calls = ", ".join(f"{k} {v:g}" for k, v in r["network_calls_per_act_call"].items()) or "none"
    rows = [("planner", name), ("score", f"{_fmt(r['score'])} ({r['score_unit']})"),
            ("return", f"{_fmt(r['final_return'])} over {r['final']['episodes']} episodes"),
            ("s / action", f"{_fmt(r['seconds_per_action'])} "
                           f"(per vector step {_fmt(r['seconds_per_act_call'])})"),
            ("calls / action", f"{_fmt(r['network_calls_per_action'])} ({calls})"),
            ("fit", f"{_fmt(r['wall_time']['fit'])} s ({'cache' if r['fit_from_cache'] else 'trained'})"),
            ("synthetic", str(r["num_synthetic"])), ("run dir", str(run.run_dir))]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        click.echo(f"{k.ljust(width)}  {v}")


plan_command.help = (plan_command.help or "").replace(
    "see `augment plan --help` below", ", ".join(registered_planners()))


def register(group: click.Group) -> None:
    """Add ``plan`` to the ``augment`` group."""
    if "plan" not in group.commands:
        group.add_command(plan_command)


__all__ = ["plan_command", "register"]
