"""Every ``augment`` subcommand given bad values: exit 2, one line on stderr, nothing created or changed.

One case per command and option class (missing / unreadable / mistyped inputs, bad numbers, names that do
not exist, outputs that may not be written or replaced, devices and envs that do not fit). The commands
run in-process through ``cli.main`` (what the ``augment`` script calls) in a scratch directory whose every
file is compared before and after.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from baselines_data import hopper_random_dataset

from cli import main
from stores import guards
from stores.convert import dataset_to_store
from stores.replay import ReplayStore
from stores.sources import flat_from_dataset, write_npz


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Inputs of every kind, good and bad, in one directory."""
    root = tmp_path_factory.mktemp("errors")
    ds = hopper_random_dataset(episodes=6, max_steps=40)
    write_npz(ds, root / "hop.npz")
    dataset_to_store(ds, root / "s.zarr", progress=False)
    dataset_to_store(ds, root / "busy.zarr", progress=False)
    flat = dict(flat_from_dataset(ds))
    n = len(flat["rewards"])
    np.savez(root / "strterm.npz", **{**flat, "terminals": np.array(["0"] * n)})
    huge = flat["rewards"].astype(np.float64)
    huge[5] = 1e300
    np.savez(root / "huge.npz", **{**flat, "rewards": huge})
    np.savez(root / "r1e30.npz", **{**flat, "rewards": np.full(n, 1e30, np.float32)},
             env_id=np.array("Hopper-v5"))
    np.savez(root / "pickled.npz", **flat, extra=np.array([{"a": 1}], dtype=object), allow_pickle=True)
    data = (root / "hop.npz").read_bytes()
    (root / "trunc.npz").write_bytes(data[: len(data) // 2])
    (root / "text.npz").write_text("observations,actions\n0.1,0.2\n")
    (root / "text.hdf5").write_text("not hdf5\n")
    (root / "plain.txt").write_text("keep me\n")
    (root / "udir").mkdir()
    (root / "udir" / "notes.txt").write_text("keep me too\n")
    (root / "run").mkdir()
    (root / "run" / guards.RUN_MARKER).write_text("")
    return root


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file()} | {str(p.relative_to(root)) + "/": (0, 0)
                                                        for p in root.rglob("*") if p.is_dir()}


CASES: list[tuple[str, str]] = [
    # store import: sources
    ("store import nope.npz --out a.zarr", "no such file"),
    ("store import trunc.npz --out a.zarr", "damaged or truncated npz"),
    ("store import text.npz --out a.zarr", "is a text file, not an npz archive"),
    ("store import text.hdf5 --out a.zarr", "is a text file, not an HDF5 file"),
    ("store import pickled.npz --out a.zarr", "key 'extra' holds Python objects"),
    ("store import strterm.npz --out a.zarr", "'terminals' holds text"),
    ("store import huge.npz --out a.zarr", "huge.npz: 'rewards' holds 1e+300 at row 5, beyond the float32"),
    ("store import minari:not/here-v0 --out a.zarr", "is not in the local root"),
    ("store import minari:bad_id --out a.zarr", "Minari dataset"),
    ("store import plain.txt --out a.zarr", "cannot read 'plain.txt'"),
    # store import: options and outputs
    ("store import hop.npz --out a.zarr --chunk-rows 0", "'--chunk-rows'"),
    ("store import hop.npz --out a.zarr --profile fast", "unknown name 'fast'"),
    ("store import hop.npz --out a.zarr --env Nope-v9", "unknown Gymnasium environment 'Nope-v9'"),
    ("store import hop.npz --out a.zarr --env HalfCheetah-v5", "HalfCheetah-v5 observations have 17"),
    ("store import hop.npz --out s.zarr", "already exists; pass --overwrite"),
    ("store import hop.npz --out udir --overwrite", "'udir' is a directory augment did not make"),
    ("store import hop.npz --out plain.txt --overwrite", "'plain.txt' is a file augment did not make"),
    ("store import hop.npz --out run --overwrite", "only replaces a replay store"),
    ("store import hop.npz --out busy.zarr --overwrite", "in use by another writer"),
    # store info / validate
    ("store info nope.zarr", "no replay store at 'nope.zarr'"),
    ("store info plain.txt", "is not a replay store"),
    ("store validate udir", "is not a replay store"),
    # store export
    ("store export s.zarr --format xyz --out a.npz", "'--format'"),
    ("store export nope.zarr --format npz --out a.npz", "no replay store"),
    ("store export s.zarr --format npz --out udir --overwrite", "'udir' is a directory"),
    ("store export s.zarr --format hdf5 --out plain.txt", "already exists"),
    ("store export s.zarr --format d3rlpy --out plain.txt --overwrite", "a file augment did not make"),
    ("store export s.zarr --format npz --out missing/../plain.txt --overwrite", "augment did not make"),
    ("store export s.zarr --format minari --out 'bad id!!'", "not a Minari dataset id"),
    ("store export s.zarr --format minari --out x", "not a Minari dataset id"),
    # store merge
    ("store merge s.zarr nope.zarr --out m.zarr", "no replay store at 'nope.zarr'"),
    ("store merge s.zarr plain.txt --out m.zarr", "is not a replay store"),
    ("store merge s.zarr s.zarr --out s.zarr --overwrite", "must be a new path"),
    ("store merge s.zarr s.zarr --out udir --overwrite", "a directory augment did not make"),
    # datasets
    ("datasets list --profile fast", "unknown name 'fast'"),
    ("datasets list --seed x", "'--seed'"),
    ("datasets build hopper-nope --profile smoke", "unknown name 'hopper-nope'"),
    ("datasets info nope.npz", "no such file"),
    ("datasets info trunc.npz", "damaged or truncated npz"),
    ("datasets info hop.npz --env Nope-v1", "unknown Gymnasium environment"),
    # train
    ("train --policy nope --dataset hop.npz", "'--policy'"),
    ("train --policy td3bc --dataset nope.npz --profile smoke", "no such file"),
    ("train --policy td3bc --dataset text.npz --profile smoke", "is a text file"),
    ("train --policy td3bc --dataset hop.npz --steps abc", "'--steps'"),
    ("train --policy td3bc --dataset hop.npz --steps 0", "steps must be >= 1"),
    ("train --policy td3bc --dataset hop.npz --real-ratio 2", "real ratio must lie in [0, 1]"),
    ("train --policy td3bc --dataset hop.npz --batch-size 0", "batch_size must be >= 1"),
    ("train --policy td3bc --dataset hop.npz --profile fast", "unknown name 'fast'"),
    ("train --policy td3bc --dataset hop.npz --device gpu", "is not a torch device"),
    ("train --policy td3bc --dataset hop.npz --profile smoke --out plain.txt", "'plain.txt' is a file"),
    ("train --policy td3bc --dataset hop.npz --profile smoke --out udir", "a directory augment did not make"),
    ("train --policy td3bc --dataset hop.npz --profile smoke --out udir --overwrite",
     "a directory augment did not make"),
    ("train --policy td3bc --dataset hop.npz --profile smoke --out s.zarr --overwrite", "is a replay store"),
    ("train --policy td3bc --dataset hop.npz --profile smoke --env HalfCheetah-v5 --out r",
     "HalfCheetah-v5 has observations of size 17"),
    ("train --policy td3bc --dataset hop.npz --profile smoke --env Nope-v0 --out r", "unknown Gymnasium"),
    ("train --policy td3bc --dataset r1e30.npz --profile smoke --out r", "'rewards' reaches 1e+30"),
    ("train --policy td3bc --dataset hop.npz --profile smoke --synthetic nope.zarr --out r", "nope.zarr"),
    ("train --policy td3bc --dataset hop.npz --profile smoke --synthetic plain.txt --out r",
     "is not a replay store"),
    # compare
    ("compare --dataset hop.npz --seeds a-b", "--seeds takes"),
    ("compare --dataset hop.npz --run bad", "--run takes ARM=RUN_DIR"),
    ("compare --dataset hop.npz --arm nope --profile smoke", "unknown name 'nope'"),
    ("compare --dataset hop.npz --jobs 0", "'--jobs'"),
    ("compare --dataset hop.npz --run base=udir", "udir"),
    ("compare --dataset hop.npz --steps 0 --profile smoke", "steps must be >= 1"),
    # dydiff / diagnose
    ("dydiff --policy td3bc --dataset nope.npz", "no such file"),
    ("dydiff --policy nope --dataset hop.npz", "'--policy'"),
    ("dydiff --policy td3bc --dataset hop.npz --profile smoke --real-ratio 2 --out d", "--real-ratio"),
    ("dydiff --policy td3bc --dataset hop.npz --profile smoke -L 0 --out d", "--rollout-length"),
    ("dydiff --policy td3bc --dataset hop.npz --profile fast", "unknown name 'fast'"),
    ("diagnose dydiff --dataset nope.npz", "no such file"),
    ("diagnose dydiff --dataset hop.npz --profile smoke --starts 0", "--starts"),
    ("diagnose dydiff --dataset hop.npz --profile smoke --max-iterations -1", "--max-iterations"),
    # generate / plan / sweep
    ("generate nope --dataset hop.npz --n 10 --out g.zarr", "unknown name 'nope'"),
    ("generate synther --dataset nope.npz --n 10 --out g.zarr", "no such file"),
    ("generate synther --dataset hop.npz --n 0 --out g.zarr", "--n must be a positive"),
    ("generate synther --dataset hop.npz --n 10 --out s.zarr", "already exists"),
    ("generate synther --dataset hop.npz --n 10 --out g.zarr -o bogus", "is not KEY=VALUE"),
    ("plan nope --dataset hop.npz", "unknown name 'nope'"),
    ("plan dmemm --dataset nope.npz", "no such file"),
    ("plan dmemm --dataset hop.npz --profile smoke --set nope=1", "unknown name 'nope'"),
    ("plan dmemm --dataset hop.npz --profile smoke --episodes 0", "--episodes"),
    ("plan dmemm --dataset hop.npz --profile smoke --out plain.txt", "'plain.txt' is a file"),
    ("generate synther --dataset hop.npz --n 10 --out udir --overwrite", "'udir' is a directory augment did"),
    ("generate synther --dataset hop.npz --n 10 --out plain.txt --overwrite", "a file augment did not make"),
    ("generate synther --dataset hop.npz --n 10 --out busy.zarr --overwrite", "in use by another writer"),
    ("generate synther --dataset hop.npz --n 10 --out run --overwrite", "only replaces a replay store"),
    ("dydiff --policy td3bc --dataset hop.npz --profile smoke --steps 0 --out d", "steps must be >= 1"),
    ("dydiff --policy td3bc --dataset hop.npz --profile smoke --out plain.txt", "'plain.txt' is a file"),
    ("dydiff --policy td3bc --dataset hop.npz --profile smoke --out udir", "a directory augment did not"),
    ("dydiff --policy td3bc --dataset r1e30.npz --profile smoke --out d", "'rewards' reaches 1e+30"),
    ("sweep run nope.yaml", "does not exist"),
    ("sweep run --dataset hop.npz --arm nope --root sw", "unknown name 'nope'"),
    ("sweep run --dataset nope.npz --root sw", "no such file"),
    ("sweep run --dataset hop.npz --seeds a-b --root sw", "seeds"),
    ("sweep status udir", "not a sweep run root"),
    ("sweep report udir", "not a sweep run root"),
]


@pytest.mark.parametrize("command,expected", CASES, ids=[c for c, _ in CASES])
def test_bad_values_exit_2_with_one_line_and_create_nothing(
        command: str, expected: str, scratch: Path, monkeypatch: pytest.MonkeyPatch,
        capfd: pytest.CaptureFixture[str]) -> None:
    import shlex

    monkeypatch.chdir(scratch)
    busy = ReplayStore.open(scratch / "busy.zarr", mode="a")  # a writer appending in "another process"
    try:
        before = _snapshot(scratch)
        with pytest.raises(SystemExit) as exit_info:
            main([*shlex.split(command), *(["--quiet"] if _takes_quiet(command) else [])])
        after = _snapshot(scratch)
    finally:
        busy.close()
    out, err = capfd.readouterr()
    lines = err.strip().splitlines()
    assert exit_info.value.code == 2, (out, err)
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and expected in lines[0], lines[0]
    assert after == before, "the command created or changed files"
    assert not (Path(os.getcwd()) / "runs").exists()


#: The cases above whose command fits models (generators, DyDiff): they must fail before fitting anything.
FITTING = [c for c, _ in CASES
           if c.startswith(("generate synther --dataset hop.npz", "dydiff --policy td3bc"))
           and " --out " in c]


@pytest.mark.parametrize("command", FITTING)
def test_bad_outputs_and_values_fail_before_any_model_is_fitted(
        command: str, scratch: Path, monkeypatch: pytest.MonkeyPatch,
        capfd: pytest.CaptureFixture[str]) -> None:
    """The checks run before the (minutes-long) model fits: fitting here fails the test."""
    import shlex

    from augment.generators import dydiff, offline

    def no_fit(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was fitted before the inputs were checked")

    monkeypatch.setattr(offline, "fit_generator", no_fit)
    monkeypatch.setattr(dydiff.DyDiffGenerator, "fit", no_fit)
    monkeypatch.chdir(scratch)
    busy = ReplayStore.open(scratch / "busy.zarr", mode="a")
    try:
        with pytest.raises(SystemExit) as exit_info:
            main([*shlex.split(command), "--quiet"])
    finally:
        busy.close()
    _, err = capfd.readouterr()
    assert exit_info.value.code == 2, err
    assert len(err.strip().splitlines()) == 1 and "model was fitted" not in err, err


def test_recipe_envs_route_mujoco_warnings_away_from_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """HalfCheetah's model warns at ``gym.make`` ("settotalmass is deprecated"); with MuJoCo's default
    handler that appends to MUJOCO_LOG.TXT in the cwd. The recipes' make_env installs the toolkit's handler
    first (the handler is reset to MuJoCo's default here, so an earlier test cannot have installed it)."""
    import mujoco

    from stores.recipe_rollouts import make_env

    previous = mujoco.get_mju_user_warning()
    monkeypatch.chdir(tmp_path)
    mujoco.set_mju_user_warning(None)
    try:
        env = make_env("HalfCheetah-v5", 5)
        env.reset(seed=0)
        env.unwrapped.data.qvel[:] = np.nan  # and a run-time warning: "Nan, Inf or huge value in QVEL"
        env.step(np.zeros(env.action_space.shape, dtype=np.float32))
        env.close()
        assert mujoco.get_mju_user_warning() is not None
    finally:
        mujoco.set_mju_user_warning(previous)
    assert list(tmp_path.iterdir()) == []


def _takes_quiet(command: str) -> bool:
    """--quiet is an option of the commands that show progress (it keeps stderr for the error alone)."""
    words = command.split()
    return words[0] in ("train", "compare", "dydiff", "generate", "plan") or words[:2] in (
        ["store", "import"], ["store", "merge"], ["datasets", "build"], ["diagnose", "dydiff"],
        ["sweep", "run"])
