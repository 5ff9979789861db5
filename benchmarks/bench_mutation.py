"""Mutation testing of the math and data modules with mutmut 3 (issue 9, class 5): a benchmark, not CI.

For each module it makes a scratch copy of the project (the package code, ``tests/`` and
``pyproject.toml``), writes a ``[tool.mutmut]`` section into that copy's pyproject.toml only (the
project's own config and a normal ``pytest`` run never see it), runs ``mutmut run`` there with the module's
test subset, and reads the verdicts back with ``mutmut results --all``. The score is mutmut's own
``(killed + timeout) / (mutants - skipped)``; mutants no test reaches count as survivors.

Install the tool with the optional extra: ``python3 -m pip install -e ".[mutation]"``.

Usage::

    nice -n 15 env OMP_NUM_THREADS=1 python3 benchmarks/bench_mutation.py augment/diffusion --timeout-min 25
    python3 benchmarks/bench_mutation.py --list            # the modules and their test subsets
    python3 benchmarks/bench_mutation.py --report          # the table of what was measured so far

Each run writes ``benchmarks/mutation/<module>.json`` (counts, score, surviving mutant names) and
``benchmarks/mutation/<module>_survivors.txt`` (the diff of each survivor, for review). A run that hits
``--timeout-min`` keeps what it has: unchecked mutants are reported as such, not as killed.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "benchmarks" / "mutation"
#: What a scratch copy needs: every package the tests import, the tests, and the build config.
COPY = ("augment", "baselines", "stores", "cli.py", "tests", "pyproject.toml")


@dataclass(frozen=True)
class Target:
    """One module under mutation: the files mutated (fnmatch globs) and the tests that judge them."""

    name: str
    mutate: tuple[str, ...]
    tests: tuple[str, ...]
    deselect: tuple[str, ...] = ()


TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("augment/diffusion", ("augment/diffusion/*.py",),
           ("tests/test_edm.py", "tests/test_windows.py", "tests/test_diffusion_exact.py",
            "tests/test_hard_replacement.py", "tests/test_diffusion_ema.py", "tests/test_ddpm.py",
            "tests/test_dpm_solver.py",
            "tests/test_trajectory_diffusion.py", "tests/test_iteration_rule.py",
            "tests/test_diffusion_mutants_ddpm.py", "tests/test_diffusion_mutants_dpm_solver.py",
            "tests/test_diffusion_mutants_training.py", "tests/test_diffusion_mutants_trajectory.py"),
           # 14 s of training per mutant; what it checks (learning a linear system) is also held by the
           # sampler and loss tests
           deselect=("tests/test_trajectory_diffusion.py::test_tiny_model_learns_linear_dynamics",)),
    Target("augment/generators", ("augment/generators/*.py",),
           ("tests/test_filters.py", "tests/test_filters_independent.py", "tests/test_dydiff.py",
            "tests/test_dydiff_behaviour.py", "tests/test_iteration_rule.py", "tests/test_rollout.py",
            "tests/test_synther.py", "tests/test_generator_contract.py", "tests/test_generate_cli.py",
            "tests/test_dydiff_schedule.py", "tests/test_generators_mutants_arms.py",
            "tests/test_generators_mutants_offline.py", "tests/test_generators_mutants_rollout.py",
            "tests/test_generators_mutants_synther.py", "tests/test_generators_mutants_termination.py",
            "tests/test_generators_mutants_rest.py"),
           # end-to-end runs of 10-16 s each (a compare of two arms, a resumed diffusion training)
           deselect=("tests/test_generate_cli.py::test_compare_runs_the_synther_and_rollout_arms",
                     "tests/test_iteration_rule.py::test_resumed_training_equals_one_run_and_samples_keep_conditions")),
    Target("augment/world", ("augment/world/*.py",),
           ("tests/test_termination.py", "tests/test_world.py", "tests/test_world_mutants.py"),
           # asserts the warning's stacklevel lands in the test file; under mutmut's trampoline it lands in
           # the trampoline (one more frame), so the unmutated run fails
           deselect=("tests/test_world_mutants.py::test_each_unknown_env_warns_once_at_the_caller",)),
    Target("baselines/sampler.py", ("baselines/sampler.py",),
           ("tests/test_sampler.py", "tests/test_sampler_exact.py", "tests/test_dydiff_schedule.py",
            "tests/test_sampler_mutants.py")),
    # stores/replay.py was split into replay_{schema,chunks,input,reader,writer}.py; the same code is mutated
    Target("stores/replay.py", ("stores/replay.py", "stores/replay_*.py"),
           ("tests/test_replay_exact.py", "tests/test_replay.py", "tests/test_truncate.py",
            "tests/test_replay_mutants.py"),
           # the kill -9 fault tests (tests/test_replay_crash.py, the kills of test_truncate.py) spawn a
           # writer per case and take 3-10 s each: a mutation run over them does not fit the CPU budget
           deselect=("tests/test_truncate.py::test_kill_during_truncate_leaves_old_or_new_length",)),
)}

#: mutmut exit-code statuses grouped for the score.
KILLED = ("killed", "timeout")


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")


def mutmut_section(target: Target, tests: list[str]) -> str:
    """The ``[tool.mutmut]`` TOML of one target (mutmut 3.x keys)."""
    def arr(items: list[str] | tuple[str, ...]) -> str:
        return "[" + ", ".join(json.dumps(i) for i in items) + "]"

    selection = list(tests) + [a for d in target.deselect for a in ("--deselect", d)]
    return "\n".join([
        "", "[tool.mutmut]",
        # every package is copied into mutants/ so the tests import the mutated tree, never the original
        f"source_paths = {arr(['augment', 'baselines', 'stores', 'cli.py'])}",
        f"only_mutate = {arr(target.mutate)}",
        f"pytest_add_cli_args_test_selection = {arr(selection)}",
        f"pytest_add_cli_args = {arr(['-p', 'no:cacheprovider', '-q'])}",
        "use_git_change_detection = false",
        "mutate_only_covered_lines = false",
        "",
    ])


def prepare(target: Target, work: Path, tests: list[str]) -> Path:
    """A fresh scratch copy of the project for ``target`` with its mutmut config; returns its path."""
    dest = work / slug(target.name)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", "mutants")
    for name in COPY:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        else:
            shutil.copy2(src, dest / name)
    pyproject = (dest / "pyproject.toml").read_text()
    pyproject = re.sub(r"\n\[tool\.mutmut\][^\[]*", "\n", pyproject)  # only ours
    (dest / "pyproject.toml").write_text(pyproject + mutmut_section(target, tests))
    return dest


def parse_results(text: str) -> dict[str, str]:
    """``mutmut results --all`` lines ``    <mutant>: <status>`` -> {mutant: status}."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"^\s+(\S+): (.+)$", line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


#: Run inside a scratch copy: generate every mutant (what ``mutmut run`` does first) and print their names.
GENERATE_SCRIPT = """
import json, os
from pathlib import Path
import mutmut.__main__ as mm
from mutmut.mutation.data import SourceFileMutationData
from mutmut.utils.file_utils import walk_mutatable_files
os.makedirs("mutants", exist_ok=True)
mm.copy_src_dir(); mm.copy_also_copy_files(); mm.setup_source_paths(); mm.create_mutants(1)
names = []
for path in walk_mutatable_files():
    m = SourceFileMutationData(path=path)
    m.load()
    names += list(m.exit_code_by_key)
print(json.dumps(names))
"""


#: Run inside a scratch copy: for every mutant named on stdin, its diff and the whole original and mutated
#: function, as JSON {mutant: [diff, original, mutant]} on stdout.
DIFFS_SCRIPT = """
import json, sys
import libcst as cst
from mutmut.mutation.diff_apply import find_mutant, get_diff_for_mutant, read_functions_from_index
from mutmut.mutation.diff_apply import read_mutants_module, read_original_function, read_mutant_function
out = {}
for name in json.load(sys.stdin):
    try:
        path = find_mutant(name).path
        funcs = read_functions_from_index(name, path)
        if funcs is None:
            module = read_mutants_module(path)
            funcs = (read_original_function(module, name), read_mutant_function(module, name))
        orig, mut = (cst.Module([f]).code.strip() for f in funcs)
        out[name] = [get_diff_for_mutant(name, path=path), orig, mut]
    except Exception as exc:  # a mutant whose function could not be read back
        out[name] = [f"(no diff: {exc})", "", ""]
print(json.dumps(out))
"""

#: Calls whose arguments only say something to a person.
MESSAGE_CALLS = {"warn", "_say", "write", "echo", "print", "set_postfix", "set_postfix_str",
                 "set_description", "info", "debug", "warning"}
#: Keyword arguments that are labels for a person.
MESSAGE_KEYWORDS = {"desc", "help", "unit", "hint"}


def _message_context(original: list[str], line: int) -> bool:
    """Whether line ``line`` (1-based) of the original function lies in a ``raise``, a message call or a
    label keyword argument."""
    import ast
    import textwrap

    try:
        tree = ast.parse(textwrap.dedent("\n".join(original)))
    except SyntaxError:
        return False
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    hits = [n for n in ast.walk(tree) if isinstance(n, ast.expr | ast.stmt)
            and n.lineno <= line <= (n.end_lineno or n.lineno)]
    for node in hits:
        chain = [node]
        while chain[-1] in parents:
            chain.append(parents[chain[-1]])
        for outer, inner in zip(chain[1:], chain, strict=False):
            if isinstance(outer, ast.Raise) and inner is outer.exc:
                return True
            if isinstance(outer, ast.keyword) and outer.arg in MESSAGE_KEYWORDS:
                return True
            if isinstance(outer, ast.Call) and inner is not outer.func:
                func = outer.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name in MESSAGE_CALLS:
                    return True
    return False


def classify(original: str, mutant: str) -> str:
    """``text`` when the mutant only changes what a person reads: the message of a ``raise``, a warning or
    progress line, or a label such as a progress bar's ``desc``; ``code`` otherwise (including string
    literals that are keys, modes, dtypes or names). original, mutant: the whole function's source."""
    import difflib

    a, b = original.splitlines(), mutant.splitlines()
    changed = [i + 1 for tag, i1, i2, _, _ in difflib.SequenceMatcher(a=a, b=b).get_opcodes()
               if tag in ("replace", "delete") for i in range(i1, i2)]
    if not changed:
        return "code"
    return "text" if all(_message_context(a, i) for i in changed) else "code"


def summarise(statuses: dict[str, str], classes: dict[str, str]) -> dict[str, object]:
    """Counts, mutmut's score, the score over ``code`` mutants only, per-file figures and survivors."""
    counts: dict[str, int] = {}
    for status in statuses.values():
        counts[status] = counts.get(status, 0) + 1
    judged = [n for n, st in statuses.items() if st not in ("skipped", "not checked")]
    killed = [n for n in judged if statuses[n] in KILLED]
    code = [n for n in judged if classes.get(n, "code") == "code"]
    code_killed = [n for n in code if statuses[n] in KILLED]
    by_file: dict[str, dict[str, int]] = {}
    for name in judged:
        entry = by_file.setdefault(re.split(r"\.x[_ǁ]", name)[0], {"mutants": 0, "killed": 0,
                                                                 "code_mutants": 0, "code_killed": 0})
        entry["mutants"] += 1
        entry["killed"] += statuses[name] in KILLED
        entry["code_mutants"] += classes.get(name, "code") == "code"
        entry["code_killed"] += classes.get(name, "code") == "code" and statuses[name] in KILLED
    survivors = sorted(n for n in judged if statuses[n] not in KILLED)
    return {"mutants": len(statuses), "judged": len(judged), "killed": len(killed),
            "score": len(killed) / len(judged) if judged else None,
            "code_judged": len(code), "code_killed": len(code_killed),
            "code_score": len(code_killed) / len(code) if code else None,
            "counts": counts, "by_file": by_file, "survivors": survivors,
            "text_survivors": [n for n in survivors if classes.get(n) == "text"]}


def _mutmut(args: list[str], dest: Path, env: dict[str, str], **kw: object) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", "import sys; from mutmut.__main__ import cli; sys.exit(cli())", *args]
    return subprocess.run(cmd, cwd=dest, env=env, **kw)  # type: ignore[call-overload]


def run_target(target: Target, work: Path, *, timeout_min: float, max_children: int, extra_tests: list[str],
               keep: bool, names: list[str], execute: bool = True, sample: int = 0,
               seed: int = 0, within: list[str] | None = None) -> dict[str, object]:
    """One mutmut run of ``target`` (all its mutants, ``names``, or a uniform random ``sample`` of them);
    writes and returns the record. within: mutant-name globs the sample is drawn from (its own record)."""
    key = slug(target.name) + ("__" + slug("_".join(within)) if within else "")
    previous = OUT_DIR / f"{key}.json"
    old = json.loads(previous.read_text()) if keep and previous.exists() else {}
    tests = [t for t in target.tests + tuple(extra_tests) if (ROOT / t.split("::")[0]).exists()]
    dest = work / slug(target.name)
    if keep and dest.exists():  # same mutants and verdicts; refresh the tests only
        shutil.copytree(ROOT / "tests", dest / "tests", dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    else:
        dest = prepare(target, work, tests)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    log = OUT_DIR / f"{key}.log"
    population: int | None = None
    if sample and execute and not names:
        gen = subprocess.run([sys.executable, "-c", GENERATE_SCRIPT], cwd=dest, env=env, capture_output=True,
                             text=True, check=True)
        every = sorted(json.loads(gen.stdout.strip().splitlines()[-1]))
        if within:
            every = [n for n in every if any(fnmatch.fnmatch(n, w) for w in within)]
        population = len(every)
        pick = random.Random(seed).sample(every, min(sample, population))
        names = sorted(pick)
    t0 = time.perf_counter()
    rc: int | str = "not run"
    with open(log, "a" if keep else "w") as fh:
        try:
            if not execute:
                raise StopIteration
            proc = _mutmut(["run", "--max-children", str(max_children), *names], dest, env, stdout=fh,
                           stderr=subprocess.STDOUT, timeout=timeout_min * 60)
            rc = proc.returncode
        except StopIteration:
            pass
        except subprocess.TimeoutExpired:
            rc = "timeout"
    seconds = time.perf_counter() - t0
    statuses = parse_results(_mutmut(["results", "--all", "true"], dest, env, capture_output=True,
                                     text=True).stdout)
    sample_names = names if sample and population is not None else old.get("sample_names")
    if sample_names is not None:  # a sample's verdicts only (the copy may hold other runs' verdicts)
        chosen = set(sample_names)
        statuses = {n: (st if n in chosen else "not checked") for n, st in statuses.items()}
    proc = subprocess.run([sys.executable, "-c", DIFFS_SCRIPT], cwd=dest, env=env, capture_output=True,
                          text=True, input=json.dumps(sorted(n for n, st in statuses.items()
                                                             if st != "not checked")))
    full: dict[str, list[str]] = json.loads(proc.stdout) if proc.returncode == 0 and proc.stdout else {}
    diffs = {n: v[0] for n, v in full.items()}
    classes = {n: classify(v[1], v[2]) for n, v in full.items()}
    summary = summarise(statuses, classes)
    survivors = summary["survivors"]
    assert isinstance(survivors, list)
    with open(OUT_DIR / f"{key}_survivors.txt", "w") as fh:
        for name in survivors:
            fh.write(f"# {name}: {statuses[name]} ({classes.get(name, '?')})\n{diffs.get(name, '')}\n\n")
    first = [{k: old[k] for k in ("when", "seconds", "mutmut_rc")}] if "when" in old else []
    runs = old.get("runs") or first
    if execute:
        runs.append({"when": time.strftime("%Y-%m-%d %H:%M:%S"), "seconds": round(seconds, 1),
                     "mutmut_rc": rc, "mutants_run": "all" if not names else len(names)})
    if population is None:
        population = old.get("population", len(statuses))
        sampled = old.get("sampled") if keep else None
    else:
        sampled = len(names)
    record = {"module": target.name, "mutated": list(target.mutate), "tests": tests,
              "population": population, "sampled": sampled,
              "sample_seed": (old.get("sample_seed") if keep and not sample else seed) if sampled else None,
              "within": within or None, "sample_names": sample_names,
              "ci95": wilson(summary["killed"], summary["judged"]),  # type: ignore[arg-type]
              "code_ci95": wilson(summary["code_killed"], summary["code_judged"]),  # type: ignore[arg-type]
              "command": "nice -n 15 env OMP_NUM_THREADS=1 python3 benchmarks/bench_mutation.py "
                         f"{target.name} --timeout-min {timeout_min:g}"
                         + (f" --sample {sampled} --seed {seed}" if sampled else "")
                         + (" --within " + " ".join(within) if within else ""),
              "seconds": round(sum(r["seconds"] for r in runs), 1), "max_children": max_children,
              "runs": runs, **summary}
    previous.write_text(json.dumps(record, indent=2))
    return record


def wilson(k: int, n: int, z: float = 1.96) -> list[float] | None:
    """95% Wilson score interval of a proportion k/n (the score of a random sample of mutants)."""
    if n == 0:
        return None
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return [round(centre - half, 4), round(centre + half, 4)]


def _pct(x: float | None) -> str:
    return f"{100 * x:.1f}%" if x is not None else "-"


def report(per_file: bool = False) -> None:
    """The measured table (markdown), from benchmarks/mutation/*.json."""
    print("| module | mutants (of) | killed | score [95% CI] | code-only score | survivors (text) "
          "| unchecked | min |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for target in TARGETS.values():
        path = OUT_DIR / f"{slug(target.name)}.json"
        if not path.exists():
            print(f"| {target.name} | - | - | - | - | - | - | - |")
            continue
        r = json.loads(path.read_text())
        ci = r.get("ci95")
        ci_txt = f" [{_pct(ci[0])}, {_pct(ci[1])}]" if ci and r.get("sampled") else ""
        unchecked = r["counts"].get("not checked", 0) - (r["population"] - r["sampled"] if r.get("sampled")
                                                         else 0)
        print(f"| {r['module']} | {r['judged']} ({r.get('population', r['mutants'])}) | {r['killed']} | "
              f"{_pct(r['score'])}{ci_txt} | {_pct(r['code_score'])} | "
              f"{len(r['survivors'])} ({len(r['text_survivors'])}) | {unchecked} | {r['seconds'] / 60:.0f} |")
        if per_file:
            for module, f in sorted(r["by_file"].items()):
                code = f["code_killed"] / f["code_mutants"] if f["code_mutants"] else None
                print(f"| &nbsp;&nbsp;{module} | {f['mutants']} | {f['killed']} | "
                      f"{_pct(f['killed'] / f['mutants'] if f['mutants'] else None)} | {_pct(code)} | | | |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("modules", nargs="*", help=f"modules to run (default all): {', '.join(TARGETS)}")
    parser.add_argument("--timeout-min", type=float, default=25.0, help="wall-clock limit per module")
    parser.add_argument("--max-children", type=int, default=1, help="mutmut worker processes")
    parser.add_argument("--work", type=Path, help="where the scratch copies go (default: "
                        "$TMPDIR/augment-mutation)",
                        default=Path(os.environ.get("TMPDIR", "/tmp")) / "augment-mutation")
    parser.add_argument("--tests", nargs="*", default=[], help="extra test paths for every module")
    parser.add_argument("--retest-survivors", action="store_true",
                        help="reuse the last scratch copy (tests refreshed) and re-run only its survivors")
    parser.add_argument("--mutants", nargs="*", default=[],
                        help="reuse the last scratch copy and re-run these mutant names / globs only")
    parser.add_argument("--sample", type=int, default=0,
                        help="run a uniform random sample of this many mutants (0: all of them)")
    parser.add_argument("--seed", type=int, default=0, help="seed of --sample")
    parser.add_argument("--within", nargs="*", default=[],
                        help="draw --sample only among mutants whose names match these globs (e.g. "
                             "'augment.generators.dydiff*'); reuses the module's scratch copy, own record")
    parser.add_argument("--summarise", action="store_true",
                        help="re-read the verdicts of the last scratch copy without running mutmut")
    parser.add_argument("--list", action="store_true", help="print the modules and their tests, then exit")
    parser.add_argument("--report", action="store_true", help="print the measured table, then exit")
    parser.add_argument("--per-file", action="store_true", help="with --report: a row per file")
    args = parser.parse_args(argv)
    if args.list:
        for t in TARGETS.values():
            print(f"{t.name}: mutate {', '.join(t.mutate)}; tests {' '.join(t.tests)}")
        return 0
    if args.report:
        report(args.per_file)
        return 0
    try:
        import mutmut  # noqa: F401
    except ImportError:
        print('mutmut is not installed: python3 -m pip install -e ".[mutation]"', file=sys.stderr)
        return 2
    unknown = [m for m in args.modules if m not in TARGETS]
    if unknown:
        print(f"unknown module(s) {unknown}; choose from {', '.join(TARGETS)}", file=sys.stderr)
        return 2
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for name in args.modules or list(TARGETS):
        keep = bool(args.retest_survivors or args.mutants or args.summarise or args.within)
        names = list(args.mutants)
        key = slug(name) + ("__" + slug("_".join(args.within)) if args.within else "")
        if args.retest_survivors:
            last = OUT_DIR / f"{key}.json"
            names = json.loads(last.read_text())["survivors"] if last.exists() else []
            if not names:
                print(f"{name}: no survivors recorded to re-test", file=sys.stderr)
                continue
        r = run_target(TARGETS[name], args.work, timeout_min=args.timeout_min, max_children=args.max_children,
                       extra_tests=args.tests, keep=keep, names=names, execute=not args.summarise,
                       sample=args.sample if not names else 0, seed=args.seed, within=args.within or None)
        print(f"{name}: {r['killed']}/{r['judged']} killed ({_pct(r['score'])}; code only "  # type: ignore
              f"{_pct(r['code_score'])}), counts {r['counts']}, {r['seconds']:.0f} s", flush=True)
    report()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
