"""The ``augment`` command line: parse options -> config dataclass -> library call -> short table.

Each room owns its commands (``stores.dataset_commands``, ``stores.store_commands``,
``baselines.commands``, ``augment.commands``); this module
only builds the group, registers them, and turns :class:`stores.errors.UserInputError` (and other expected
failures) into one clear line and a non-zero exit, with the traceback only under ``--debug``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import traceback

import click

from stores.errors import UserInputError


def _silence_gym_banner() -> None:
    """Import the legacy ``gym`` package (a d3rlpy dependency) with stderr captured.

    gym 0.26 prints a multi-line "unmaintained" notice to stderr on import, with no switch to turn it off;
    the toolkit itself uses Gymnasium, so the notice only confuses users of ``augment``.
    """
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            import gym  # noqa: F401
    except ImportError:  # pragma: no cover - gym comes with d3rlpy
        pass


def _quiet_libraries() -> None:
    """Silence d3rlpy's structlog chatter below WARNING."""
    try:
        import structlog

        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    except ImportError:  # pragma: no cover
        pass


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Data augmentation for offline RL with diffusion models.

    \b
    Start here:
      augment datasets list                      what datasets exist and where they come from
      augment datasets build hopper-medium-replay --profile smoke
      augment train --policy td3bc --dataset hopper-medium-replay
      augment dydiff --policy td3bc --dataset hopper-medium-replay
      augment compare --help                     did augmentation help? (seeds, IQM, CIs)

    Profiles: 'smoke' (seconds, for tests), 'cpu' (default without CUDA; scaled down), 'paper'
    (the papers' settings; needs a GPU).
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    _quiet_libraries()


def _register() -> None:
    _silence_gym_banner()
    rooms = ("stores.dataset_commands", "stores.store_commands", "baselines.commands",
             "baselines.sweep_commands", "augment.commands", "augment.generators.commands",
             "augment.planners.commands")
    for module_name in rooms:
        try:
            module = __import__(module_name, fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        module.register(cli)


_register()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the group and map expected errors to one line and exit code 2."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        cli.main(args=argv, prog_name="augment", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.UsageError as exc:  # bad option values: one line, like every other user error
        ctx = exc.ctx
        where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        click.echo(f"error: {exc.format_message()}{where}", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except UserInputError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", err=True)
        sys.exit(2)
    except OSError as exc:  # the disk refused (full, read-only, permission, missing path): one line
        from stores.guards import os_error_line

        if debug:
            traceback.print_exc()
        click.echo(f"error: {os_error_line(exc, action='access')}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
