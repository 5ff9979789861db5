"""Fault-suite helper: run one ``augment`` command in this process and SIGKILL it after a delay.

``python fault_driver.py DELAY_S ARG...`` imports the CLI (and the modules named in ``FAULT_PRELOAD``,
comma-separated) first, prints ``ready``, then starts a timer that sends SIGKILL to this process after
``DELAY_S`` seconds while ``cli.main(ARG...)`` runs, so the delay measures time inside the command, not
interpreter start-up. A command that finishes first exits normally.
"""

from __future__ import annotations

import os
import signal
import sys
import threading


def main() -> None:
    delay, argv = float(sys.argv[1]), sys.argv[2:]
    import cli

    for module in filter(None, os.environ.get("FAULT_PRELOAD", "").split(",")):
        __import__(module)
    print("ready", flush=True)
    timer = threading.Timer(delay, lambda: os.kill(os.getpid(), signal.SIGKILL))
    timer.daemon = True
    timer.start()
    cli.main(argv)


if __name__ == "__main__":
    main()
