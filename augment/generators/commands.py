"""``augment generate GENERATOR --dataset NAME --n N --out STORE``: options -> library call -> end table.

The work is :func:`augment.generators.offline.generate_store`; this module only parses options, runs the
checks that need no data first (:func:`~augment.generators.offline.check_generate_request`), and prints
the table.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import click


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if not math.isfinite(value) else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def end_table(row: dict[str, Any]) -> str:
    """A two-column table of one result row."""
    width = max(len(k) for k in row)
    return "\n".join(f"{k.ljust(width)}  {_fmt(v)}" for k, v in row.items())


def run_generate(generator: str, dataset: str, n: int, out: Path, *, policy: str = "behavior",
                 profile: str | None = None, seed: int = 0, env_id: str | None = None,
                 overwrite: bool = False, options: tuple[str, ...] = (), progress: bool = True) -> Any:
    """Check the inputs, load the dataset, generate ``n`` transitions into the store ``out``."""
    from augment.generators.offline import check_generate_request, generate_store, parse_options
    from augment.profiles import profile_banner, resolve_profile
    from stores.datasets import load_dataset

    opts = parse_options(generator, options)
    preloaded = check_generate_request(generator, n, out, overwrite=overwrite, policy=policy)
    profile = resolve_profile(profile)
    banner = profile_banner(profile)
    if banner and progress:
        click.echo(banner, err=True)
    data = load_dataset(dataset, profile=profile, env_id=env_id, progress=progress)
    if data.env_id is None and progress:
        click.echo(f"dataset '{data.name}' names no environment: termination comes from the data's terminals "
                   "(or none); the choice is recorded in the store", err=True)
    result, _ = generate_store(generator, data, n, out, policy=policy, profile=profile, seed=seed,
                               overwrite=overwrite, options=opts, progress=progress,
                               preloaded_policy=preloaded)
    return result


@click.command("generate")
@click.argument("generator")
@click.option("--dataset", required=True, help="Dataset name/alias, .hdf5/.npz path or minari:<id>.")
@click.option("--n", "n", type=int, required=True, help="Synthetic transitions to write.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="ReplayStore (.zarr) to create.")
@click.option("--policy", default="behavior", show_default=True,
              help="'behavior' (behaviour cloning on the data) or a saved d3rlpy learner (model.d3); "
                   "ignored by synther.")
@click.option("--profile", default=None, help="smoke | cpu | paper (default: paper with CUDA, else cpu).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--env", "env_id", default=None, help="Env id when the file does not name one.")
@click.option("-o", "--option", "options", multiple=True,
              help="Generator setting KEY=VALUE (repeatable), e.g. -o h=3 -o penalty=1 (rollout), "
                   "-o M=1 (dydiff), -o N=64 -o terminals=model (synther).")
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
@click.option("--quiet", is_flag=True, help="No progress bars or banners.")
def generate_command(generator: str, dataset: str, n: int, out: Path, policy: str, profile: str | None,
                     seed: int, env_id: str | None, options: tuple[str, ...], overwrite: bool,
                     quiet: bool) -> None:
    """Write N synthetic transitions of GENERATOR (synther, rollout, dydiff, ...) into a new store.

    \b
    Examples:
      augment generate synther --dataset hopper-medium-replay --n 200000 --out synther.zarr
      augment generate rollout --dataset hopper-medium-replay --n 100000 --out mbpo.zarr -o h=5
      augment train --policy td3bc --dataset hopper-medium-replay --synthetic synther.zarr
    """
    result = run_generate(generator, dataset, n, out, policy=policy, profile=profile, seed=seed,
                          env_id=env_id, overwrite=overwrite, options=options, progress=not quiet)
    click.echo(end_table(result.table_row()))
    click.echo(f"store: {out}")


def register(group: click.Group) -> None:
    """Add ``generate`` to the ``augment`` group."""
    group.add_command(generate_command)


__all__ = ["end_table", "register", "run_generate"]
