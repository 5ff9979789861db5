"""Test-wide settings: one torch thread, and caches isolated in a per-session temporary directory.

The session-wide cache means the smoke dataset recipe is built once per test run and shared by tests
of every room; tests that need isolation use ``tmp_path`` and set the variables themselves.
"""

from __future__ import annotations

import logging
import os
import tempfile

_SESSION_ROOT = tempfile.mkdtemp(prefix="augment-tests-")
os.environ["AUGMENT_HOME"] = os.path.join(_SESSION_ROOT, "home")
os.environ["MINARI_DATASETS_PATH"] = os.path.join(_SESSION_ROOT, "minari")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import structlog  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
