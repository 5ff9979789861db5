"""``augment sweep``: options (or a YAML file) -> SweepSpec -> :func:`baselines.sweep.run_sweep` -> tables.

``augment sweep SWEEP.yaml [options]`` runs a sweep (the same as ``augment sweep run ...``);
``augment sweep status ROOT`` shows done / running / failed / pending cells; ``augment sweep report ROOT``
rewrites the tables from the runs finished so far.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import click

from baselines.learner_names import LEARNERS


class _DefaultRunGroup(click.Group):
    """A group whose first argument, when it is not a subcommand, goes to ``run`` (``augment sweep FILE``)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group("sweep", cls=_DefaultRunGroup, no_args_is_help=True)
def sweep_group() -> None:
    """Sweeps: datasets x arms x learners x seeds, on a local process pool or a Ray cluster, resumable.

    \b
      augment sweep SWEEP.yaml                     run (or resume) the sweep a YAML file describes
      augment sweep --root runs/sw --dataset hopper-medium-replay --arm base --arm dydiff --seeds 0-4
      augment sweep SWEEP.yaml --engine ray --address auto
      augment sweep status runs/sw                 done, running, failed, pending
      augment sweep report runs/sw                 tables from what has finished so far

    See docs/sweeps.md for the YAML format, engines and the result layout.
    """


@sweep_group.command("run")
@click.argument("sweep_file", required=False, type=click.Path(path_type=Path))
@click.option("--root", type=click.Path(path_type=Path), default=None,
              help="Run root (every run, state file and table lands here) [YAML root:].")
@click.option("--dataset", "datasets", multiple=True, help="Dataset (repeatable) [YAML datasets:].")
@click.option("--arm", "arms", multiple=True,
              help="Arm (repeatable; the first is the reference): base | synthetic:STORE | dydiff | any "
                   "registered arm [YAML arms:, default base].")
@click.option("--policy", "learners", multiple=True, type=click.Choice(LEARNERS),
              help="Learner (repeatable) [YAML learners:, default td3bc].")
@click.option("--seeds", default=None, help="Seeds: '0,1,2' or '0-4' [YAML seeds:, default 0,1,2].")
@click.option("--profile", default=None, help="smoke | cpu | paper (default: cpu without CUDA).")
@click.option("--steps", type=int, default=None, help="Learner updates per run (TrainConfig override).")
@click.option("--eval-every", type=int, default=None, help="Updates between evaluations.")
@click.option("--eval-episodes", type=int, default=None, help="Episodes per evaluation.")
@click.option("--real-ratio", type=float, default=None, help="alpha for synthetic arms.")
@click.option("--metric", type=click.Choice(["last5", "final"]), default=None,
              help="Per-seed score: mean of the last 5 evaluations, or the last one [last5].")
@click.option("--engine", type=click.Choice(["local", "ray"]), default=None,
              help="local: process pool (--jobs); ray: one Ray task per run [local].")
@click.option("--address", default=None, help="Ray cluster address (auto, HOST:PORT) for --engine ray.")
@click.option("--jobs", type=int, default=None, help="Local engine: runs in parallel processes [1].")
@click.option("--cpus-per-run", type=float, default=None, help="CPUs one run reserves (torch threads) [1].")
@click.option("--gpus-per-run", type=float, default=None, help="GPUs one run reserves (Ray) [0].")
@click.option("--retries", type=int, default=None, help="Extra attempts of a failed run [1].")
@click.option("--retry-failed", is_flag=True, help="Run again cells that failed in an earlier sweep.")
@click.option("--no-warmup", is_flag=True, help="Start every seed at once, even of model-training arms.")
@click.option("--dry-run", is_flag=True,
              help="List this sweep's cells and what would happen to each (done: skipped); run and write "
                   "nothing.")
@click.option("--add-only", is_flag=True,
              help="Add this sweep's cells to the root's grid and run none: status counts them as pending "
                   "and the tables list them as missing until a later call runs them.")
@click.option("--quiet", is_flag=True, help="No progress bar or per-run lines.")
def run_cmd(sweep_file: Path | None, root: Path | None, datasets: tuple[str, ...], arms: tuple[str, ...],
            learners: tuple[str, ...], seeds: str | None, profile: str | None, steps: int | None,
            eval_every: int | None, eval_episodes: int | None, real_ratio: float | None, metric: str | None,
            engine: str | None, address: str | None, jobs: int | None, cpus_per_run: float | None,
            gpus_per_run: float | None, retries: int | None, retry_failed: bool, no_warmup: bool,
            dry_run: bool, add_only: bool, quiet: bool) -> None:
    """Run (or resume) a sweep; options override the YAML file's values. Ends with the per-task
    compare tables and ROOT/summary.md, which cover every cell the root was ever swept with (a narrower
    call, e.g. one arm and two seeds of a YAML grid, runs only its cells and adds them to the root);
    exits 1 when this call's cells are missing (failed or still running)."""
    from augment.profiles import profile_banner
    from baselines.sweep import add_to_grid, plan_sweep, run_sweep
    from baselines.sweep_grid import build, read_sweep_file

    options: dict[str, Any] = dict(read_sweep_file(sweep_file)) if sweep_file is not None else {}
    given = {"root": root, "datasets": list(datasets) or None, "arms": list(arms) or None,
             "learners": list(learners) or None, "seeds": seeds, "profile": profile, "metric": metric,
             "engine": engine, "address": address, "jobs": jobs, "retries": retries}
    options.update({k: v for k, v in given.items() if v is not None})
    train = {"steps": steps, "eval_every": eval_every, "eval_episodes": eval_episodes,
             "real_ratio": real_ratio}
    if any(v is not None for v in train.values()):
        options["overrides"] = {**(options.get("overrides") or {}),
                                **{k: v for k, v in train.items() if v is not None}}
    res = {"cpus": cpus_per_run, "gpus": gpus_per_run}
    if any(v is not None for v in res.values()):
        options["resources"] = {**(options.get("resources") or {}),
                                **{k: v for k, v in res.items() if v is not None}}
    if no_warmup:
        options["warmup"] = False
    spec, engine_options = build(options)
    if dry_run and add_only:
        raise click.UsageError("--dry-run writes nothing and --add-only writes the grid: give one")
    if dry_run:
        _print_plan(plan_sweep(spec), spec.root, retry_failed=retry_failed)
        return
    if add_only:
        added = add_to_grid(spec)
        counts = Counter(s.status for s in added)
        click.echo(f"added {len(added)} cells to the grid of {spec.root} and ran none: "
                   + ", ".join(f"{k} {counts[k]}" for k in ("done", "running", "failed", "pending")))
        return
    banner = profile_banner(spec.profile)
    if banner and not quiet:
        click.echo(banner, err=True)
    result = run_sweep(spec, engine_options, retry_failed=retry_failed, progress=not quiet)
    for path in result.report.task_files.values():
        click.echo(path.read_text())
    click.echo(result.report.files["markdown"].read_text())
    click.echo(f"{result.status.line()}; ran {result.ran} in {result.seconds:.0f} s")
    click.echo("wrote " + ", ".join(str(p) for p in result.report.files.values()))
    if result.missing:
        click.echo(f"{len(result.missing)} cell(s) of this call have no finished run: "
                   + "; ".join(result.missing), err=True)
        raise click.exceptions.Exit(1)


def _print_plan(cells: list[Any], root: Path, *, retry_failed: bool) -> None:
    """One line per cell of a dry run: what ``augment sweep run`` would do with it."""
    def action(status: str) -> str:
        return {"done": "skip", "running": "wait", "pending": "run",
                "failed": "run" if retry_failed else "skip"}[status]

    width = max((len(s.cell.describe()) for s in cells), default=0)
    for s in cells:
        click.echo(f"  {action(s.status):<4} {s.status:<8} {s.cell.describe():<{width}}  {s.detail}".rstrip())
    todo = sum(action(s.status) == "run" for s in cells)
    click.echo(f"dry run on {root}: {len(cells)} cells, {todo} would run; nothing was run or written")


@sweep_group.command("status")
@click.argument("root", type=click.Path(path_type=Path))
@click.option("--all", "show_all", is_flag=True, help="List finished cells too.")
def status_cmd(root: Path, show_all: bool) -> None:
    """Done, running, failed and pending cells of the sweep in ROOT (reads its files; runs nothing)."""
    from baselines.sweep import sweep_status

    status = sweep_status(root)
    click.echo(f"sweep {root}: {status.line()}")
    shown = [s for s in status.cells if show_all or s.status != "done"]
    if shown:
        width = max(len(s.cell.describe()) for s in shown)
        for s in shown:
            click.echo(f"  {s.status:<8} {s.cell.describe():<{width}}  {s.detail}")


@sweep_group.command("report")
@click.argument("root", type=click.Path(path_type=Path))
def report_cmd(root: Path) -> None:
    """Write the per-task tables and ROOT/summary.md from the runs finished so far (runs nothing)."""
    from baselines.sweep import report_sweep

    status, rep = report_sweep(root)
    click.echo(rep.files["markdown"].read_text())
    click.echo(f"sweep {root}: {status.line()}")
    click.echo("wrote " + ", ".join(str(p) for p in rep.files.values()))


def register(group: click.Group) -> None:
    """Add ``sweep`` (run / status / report) to the ``augment`` group."""
    group.add_command(sweep_group)
