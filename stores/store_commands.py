"""``augment store ...``: import data into a replay store, inspect, validate, export, merge.

Each command parses options, calls :mod:`stores.convert` / :mod:`stores.replay`, and prints a short table.
Errors the user can fix raise :class:`~stores.errors.UserInputError`; ``cli.main`` prints them as one line
and exits 2.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from stores.convert import EXPORT_FORMATS


def _table(rows: list[tuple[str, Any]]) -> None:
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        click.echo(f"  {key.ljust(width)}  {value}")


def _mb(nbytes: int) -> str:
    return f"{nbytes / 1e6:.2f} MB"


def _check_out(out: Path, overwrite: bool, allowed: tuple[str, ...]) -> None:
    """Fail before any work when --out exists and may not be replaced (see stores.guards)."""
    from stores.errors import UserInputError
    from stores.guards import check_replaceable

    if out.exists() or out.is_symlink():
        if not overwrite:
            raise UserInputError(f"'{out}' already exists; pass --overwrite to replace it")
        check_replaceable(out, allowed)


@click.group("store")
def store_group() -> None:
    """Replay stores (Zarr v3): where synthetic transitions live, with per-row provenance.

    \b
      augment store import hopper-medium-replay --out data/hmr.zarr --profile smoke
      augment store info runs/x/synthetic.zarr
      augment store validate runs/x/synthetic.zarr
      augment store export runs/x/synthetic.zarr --format d3rlpy --out synthetic.h5
      augment store merge a.zarr b.zarr --out both.zarr
    """


@store_group.command("import")
@click.argument("source")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="Store to create.")
@click.option("--profile", default=None, help="Recipe profile when SOURCE is a dataset name built on demand "
                                              "(smoke | cpu | paper).")
@click.option("--env", "env_id", default=None, help="Gymnasium env id when the file does not say it.")
@click.option("--overwrite", is_flag=True, help="Replace an existing replay store at --out (only a replay "
                                                "store no process is writing to).")
@click.option("--chunk-rows", default=32768, show_default=True, type=click.IntRange(min=1),
              help="Rows per Zarr chunk.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def import_cmd(source: str, out: Path, profile: str | None, env_id: str | None, overwrite: bool,
               chunk_rows: int, quiet: bool) -> None:
    """Import SOURCE (a dataset name or alias, a .hdf5/.npz file, minari:<id>, or a d3rlpy .h5 dump)."""
    from augment.profiles import resolve_profile
    from stores.convert import dataset_to_store, import_source

    if profile is not None:
        resolve_profile(profile)  # a misspelt profile fails even when SOURCE is a file
    _check_out(out, overwrite, ("store",))
    t0 = time.perf_counter()
    dataset, provenance = import_source(source, profile=profile, env_id=env_id, progress=not quiet)
    store = dataset_to_store(dataset, out, overwrite=overwrite, chunk_rows=chunk_rows, provenance=provenance,
                             progress=not quiet)
    click.echo(f"imported {dataset.name} -> {out} in {time.perf_counter() - t0:.1f} s")
    _table([("transitions", len(store)), ("trajectories", store.num_trajectories),
            ("env", dataset.env_id or "unknown"), ("provenance", "restored from file" if provenance
                                                    else f"generator {store.generators}"),
            ("disk", _mb(store.disk_bytes()))])


@store_group.command("info")
@click.argument("store", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object instead of a table.")
def info_cmd(store: Path, as_json: bool) -> None:
    """Rows, trajectories, generators, provenance and disk size of STORE."""
    from stores.replay import ReplayStore

    info = ReplayStore.open(store).info()
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(f"{info['path']}  (format v{info['format_version']}; obs {info['observation_size']}, "
               f"act {info['action_size']})")
    gens = ", ".join(f"{name}: {rows}" for name, rows in info["generators"].items()) or "none"
    _table([
        ("transitions", info["rows"]), ("trajectories", info["trajectories"]),
        ("terminals", info["terminals"]), ("timeouts", info["timeouts"]),
        ("generators", gens), ("generator", info["generator_name"] or "n/a"),
        ("source", f"{info['source_dataset'] or 'n/a'} (hash {info['source_hash'] or 'n/a'})"),
        ("env", info["env_id"] or "unknown"), ("seed", info["seed"]),
        ("normalization", "yes" if info["has_normalization"] else "no"),
        ("created", info["created"]), ("updated", info["updated"]), ("disk", _mb(info["disk_bytes"])),
    ])


@store_group.command("validate")
@click.argument("store", type=click.Path(path_type=Path))
def validate_cmd(store: Path) -> None:
    """Check schema, lengths, chunks, NaN/inf and trajectory boundaries of STORE (exit 2 on a problem)."""
    from stores.replay import ReplayStore

    opened = ReplayStore.open(store)
    opened.validate()
    click.echo(f"ok: {store} holds {len(opened)} valid transitions in {opened.num_trajectories} trajectories")


@store_group.command("export")
@click.argument("store", type=click.Path(path_type=Path))
@click.option("--format", "fmt", required=True, type=click.Choice(EXPORT_FORMATS),
              help="npz / hdf5 (D4RL layout) / d3rlpy (ReplayBuffer dump) files, or a Minari dataset.")
@click.option("--out", "out", required=True,
              help="Output file; for --format minari the dataset id (namespace/name-vN).")
@click.option("--env", "env_id", default=None, help="Env id when the store does not record one.")
@click.option("--minari-root", default=None, type=click.Path(path_type=Path),
              help="Minari datasets root (default: MINARI_DATASETS_PATH or ~/.minari/datasets).")
@click.option("--overwrite", is_flag=True, help="Replace an earlier export at --out (never a directory or a "
                                                "file augment did not write).")
def export_cmd(store: Path, fmt: str, out: str, env_id: str | None, minari_root: Path | None,
               overwrite: bool) -> None:
    """Export STORE to another format, losslessly (see docs/store.md)."""
    from stores.convert import export_store
    from stores.errors import UserInputError
    from stores.paths import minari_root as default_minari_root
    from stores.replay import ReplayStore

    if fmt == "minari":
        from stores.sources import check_minari_id

        check_minari_id(out)
        _check_out((minari_root or default_minari_root()) / out, overwrite, ("minari",))
    else:
        if Path(out).is_dir():
            raise UserInputError(f"'{out}' is a directory; --out names the {fmt} file to write")
        _check_out(Path(out), overwrite, ("export",))
    opened = ReplayStore.open(store)
    t0 = time.perf_counter()
    path = export_store(opened, fmt, out, env_id=env_id, minari_root=minari_root, overwrite=overwrite)
    seconds = time.perf_counter() - t0
    click.echo(f"exported {len(opened)} transitions to {fmt}: {path} in {seconds:.2f} s "
               f"({len(opened) / max(seconds, 1e-9):,.0f} transitions/s)")


@store_group.command("merge")
@click.argument("a", type=click.Path(path_type=Path))
@click.argument("b", type=click.Path(path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="New store.")
@click.option("--overwrite", is_flag=True, help="Replace an existing replay store at --out (only a replay "
                                                "store no process is writing to).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def merge_cmd(a: Path, b: Path, out: Path, overwrite: bool, quiet: bool) -> None:
    """Concatenate stores A and B into a new store, keeping every row's provenance."""
    from stores.convert import merge_stores

    _check_out(out, overwrite, ("store",))
    merged = merge_stores([a, b], out, overwrite=overwrite, progress=not quiet)
    click.echo(f"merged {a} + {b} -> {out}")
    _table([("transitions", len(merged)), ("trajectories", merged.num_trajectories),
            ("generators", ", ".join(merged.generators))])


def register(group: click.Group) -> None:
    """Add the ``store`` command group to the ``augment`` CLI."""
    group.add_command(store_group)
