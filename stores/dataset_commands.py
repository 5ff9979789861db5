"""``augment datasets ...``: list the registered names, build a recipe, inspect a dataset.

Each command parses options, calls :mod:`stores.datasets` / :mod:`stores.recipes`, and prints a short table.
Errors the user can fix raise :class:`~stores.errors.UserInputError`; ``cli.main`` prints them as one line
and exits 2.
"""

from __future__ import annotations

import json

import click
import numpy as np

from stores.errors import UserInputError


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None or not np.isfinite(value):
        return "n/a"
    return f"{value:.{digits}f}"


@click.group("datasets")
def datasets_group() -> None:
    """Offline datasets: what exists and where it comes from, build recipes, inspect."""


@datasets_group.command("list")
@click.option("--profile", default=None, help="Recipe profile to report: smoke | cpu | paper "
                                              "(default: cpu without CUDA).")
@click.option("--seed", default=0, show_default=True, type=int, help="Recipe seed.")
def list_cmd(profile: str | None, seed: int) -> None:
    """Every registered name, the source it resolves to now, and whether that data is on disk."""
    from augment.profiles import resolve_profile
    from stores.datasets import d4rl_dir, resolve_source
    from stores.names import KIND_ALIASES, NAMES, parse_name

    profile = resolve_profile(profile)
    short = {v: k for k, v in KIND_ALIASES.items() if len(k) <= 2 and k != "m"}
    maze_short = {"umaze": "u", "medium": "med", "large": "l"}
    rows = []
    for name in NAMES:
        src = resolve_source(name, profile=profile, seed=seed)
        parsed = parse_name(name)
        alias = (f"{parsed.family}-{maze_short[parsed.kind]}" if parsed.is_maze
                 else f"{parsed.family}-{short[parsed.kind]}")
        location = src.location
        if src.kind == "recipe" and src.cached and src.recipe_version is not None:
            from stores.recipes import RECIPE_VERSION

            if src.recipe_version < RECIPE_VERSION:
                location += f" (old recipe v{src.recipe_version})"
        rows.append((name, alias, src.kind, "yes" if src.cached else "no", location))
    widths = [max(len(r[i]) for r in rows + [("name", "alias", "source", "cached", "location")])
              for i in range(5)]
    header = ("name", "alias", "source", "cached", "location")
    click.echo("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    click.echo(f"\nresolution: D4RL file in {d4rl_dir()} -> local Minari dataset -> project recipe "
               f"(profile '{profile}', built on demand; maze2d: recipe only). Also accepted: a .hdf5/.npz "
               "path, minari:<id>.")


@datasets_group.command("build")
@click.argument("name")
@click.option("--profile", default=None, help="smoke | cpu | paper (default: cpu without CUDA).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--force", is_flag=True, help="Rebuild even when cached.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def build_cmd(name: str, profile: str | None, seed: int, force: bool, quiet: bool) -> None:
    """Build the recipe dataset NAME (and the kinds its run also yields) into the local Minari root.

    It first says what it will do, how long it should take and where the result goes; a killed
    locomotion build resumes from its checkpoint when rerun. Names: `augment datasets list`.
    """
    import time

    from augment.profiles import profile_banner, resolve_profile
    from stores.datasets import canonical_name
    from stores.recipes import build_recipe, recipe_dataset_id
    from stores.sources import minari_dataset_dir

    canonical = canonical_name(name)
    profile = resolve_profile(profile)
    banner = profile_banner(profile)
    if banner and not quiet:
        click.echo(banner)
    started = time.perf_counter()
    ds = build_recipe(canonical, profile=profile, seed=seed, force=force, progress=not quiet)
    wall = time.perf_counter() - started
    recipe = ds.provenance.get("recipe", {})
    dataset_id = recipe_dataset_id(canonical, profile=profile, seed=seed)
    click.echo(f"{ds.name}: {ds.num_episodes} episodes, {ds.num_transitions} transitions "
               f"(this command {wall:.0f} s)")
    for line in recipe_lines(recipe):
        click.echo(line.strip())
    click.echo(f"minari id: {dataset_id}\npath: {minari_dataset_dir(dataset_id)}")


def recipe_lines(recipe: dict) -> list[str]:
    """What a recipe's metadata says about its behaviour policy and threshold (v0 and v1 metadata)."""
    if not recipe:
        return []
    lines = [f"  recipe        v{recipe.get('recipe_version')} {recipe.get('recipe')}, profile "
             f"{recipe.get('profile')}, seed {recipe.get('seed')}, {recipe.get('env_steps')} env steps"
             + (f" (resumed at step {', '.join(str(s) for s in recipe['resumed_from'])})"
                if recipe.get("resumed_from") else "")]
    reached = recipe.get("threshold_reached")
    if reached is not None:
        name = recipe.get("threshold", "medium")
        score = recipe.get("threshold_score", recipe.get("medium_threshold_score"))
        ret = recipe.get("threshold_return", recipe.get("medium_threshold_return"))
        if reached:
            step = recipe.get("threshold_step", recipe.get("snapshot_step"))
            state = f"reached at env step {step} (the first evaluation at or above it)"
        else:
            state = (f"NOT reached: {recipe.get('stopped_by', 'step cap')} at env step "
                     f"{recipe.get('snapshot_step')}; the data are the snapshot at the cap")
        word = "reached" if reached else "not reached"
        lines.append(f"  threshold     {name} threshold {_fmt(score)} {word} "
                     f"(normalized {_fmt(score)} = return {_fmt(ret)}): {state}")
    episodes = recipe.get("behaviour_eval_episodes")
    over = f" over {episodes} episodes" if episodes else ""
    std = recipe.get("behaviour_eval_std")
    spread = f" +- {_fmt(std)}" if std is not None else ""
    lines.append(f"  behaviour     eval return {_fmt(recipe.get('behaviour_eval_return'))}{spread}{over}, "
                 f"normalized {_fmt(recipe.get('behaviour_eval_score'))}"
                 + (f" ({recipe['behaviour_eval_policy']})" if recipe.get("behaviour_eval_policy") else ""))
    if recipe.get("wall_time_s") is not None:
        lines.append(f"  build time    {_fmt(recipe.get('wall_time_s'), 0)} s")
    machine = recipe.get("machine")
    if machine:
        pins = ", ".join(f"{k}={v}" for k, v in (machine.get("variables") or {}).items() if v is not None)
        lines.append(f"  built on      {machine.get('cpu') or 'unknown CPU'} (torch kernels "
                     f"{machine.get('torch_cpu_capability')}, {machine.get('torch_threads')} thread(s)"
                     + (f"; {pins}" if pins else "; no kernel pins") + ")")
    return lines


@datasets_group.command("info")
@click.argument("source")
@click.option("--profile", default=None, help="Recipe profile for names (default: cpu without CUDA).")
@click.option("--env", "env_id", default=None, help="Gymnasium env id when the file does not say it.")
@click.option("--seed", default=0, show_default=True, type=int, help="Recipe seed for names.")
@click.option("--build/--no-build", default=False, show_default=True,
              help="Build a recipe that is not cached yet.")
@click.option("--allow-download", is_flag=True, help="Let Minari download data it does not have locally "
                                                    "(needs a network).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object instead of a table.")
def info_cmd(source: str, profile: str | None, env_id: str | None, seed: int, build: bool,
             allow_download: bool, as_json: bool) -> None:
    """Episodes, transitions, returns and the data's normalized score of a NAME or PATH."""
    from stores.datasets import load_dataset
    from stores.scores import normalized_score

    ds = load_dataset(source, profile=profile, env_id=env_id, seed=seed, build=build,
                      allow_download=allow_download)
    st = ds.stats
    score: float | None = None
    score_of = ds.name if _has_reference(ds.name) else ds.env_id
    if score_of is not None and _has_reference(score_of):
        score = float(normalized_score(st.return_mean, score_of))
    lengths = np.array([len(ep) for ep in ds.episodes])
    info = {
        "name": ds.name, "env_id": ds.env_id, "episodes": ds.num_episodes, "transitions": ds.num_transitions,
        "observation_size": ds.observation_size, "action_size": ds.action_size,
        "episode_length_mean": float(lengths.mean()), "return_mean": st.return_mean,
        "return_std": st.return_std, "return_min": st.return_min, "return_max": st.return_max,
        "normalized_score": score, "terminals": int(ds.transitions.terminals.sum()),
        "content_hash": ds.content_hash, "source": ds.provenance.get("source"),
        "path": ds.provenance.get("path"), "dataset_id": ds.provenance.get("dataset_id"),
    }
    recipe = ds.provenance.get("recipe")
    if recipe:
        info["recipe"] = {k: recipe.get(k) for k in (
            "recipe", "recipe_version", "profile", "seed", "env_steps", "threshold", "threshold_score",
            "threshold_return", "threshold_reached", "threshold_step", "stopped_by", "medium_threshold_score",
            "behaviour_eval_return", "behaviour_eval_std", "behaviour_eval_episodes", "behaviour_eval_score",
            "data_score", "resumed_from", "wall_time_s", "machine")}
        if "data_score" in recipe and recipe["data_score"] is None:
            score = None  # e.g. maze2d: segments of one run, not evaluation episodes
            info["normalized_score"] = None
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(f"{ds.name}  (env {ds.env_id or 'unknown'}; obs {ds.observation_size}, act {ds.action_size})")
    click.echo(f"  episodes      {ds.num_episodes}  (mean length {lengths.mean():.1f}, "
               f"{info['terminals']} end in a terminal state)")
    click.echo(f"  transitions   {ds.num_transitions}")
    click.echo(f"  return        mean {st.return_mean:.1f}  std {st.return_std:.1f}  "
               f"min {st.return_min:.1f}  max {st.return_max:.1f}")
    note = (recipe or {}).get("data_score_note") or "D4RL reference returns; mean episode return of the data"
    click.echo(f"  normalized    {_fmt(score)}  ({note})")
    dataset_id = f"  {info['dataset_id']}" if info["dataset_id"] else ""
    click.echo(f"  source        {info['source']}{dataset_id}")
    click.echo(f"  path          {info['path']}")
    click.echo(f"  content hash  {ds.content_hash}")
    for line in recipe_lines(recipe or {}):
        click.echo(line)


def _has_reference(name: str) -> bool:
    from stores.scores import family_of

    try:
        family_of(name)
    except UserInputError:
        return False
    return True


def register(group: click.Group) -> None:
    """Add the ``datasets`` group to the ``augment`` CLI."""
    group.add_command(datasets_group)
