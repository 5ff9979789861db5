"""The on-disk layout of a trained diffusion model, shared by SynthER and DyDiff's trajectory model:
a directory holding ``config.json`` (the model's config), ``meta.json`` (normaliser, sizes, training
record) and ``model.pt`` (the network's state dict, CPU tensors)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

WEIGHTS = "model.pt"


def write_model_dir(directory: str | Path, config: dict[str, Any], meta: dict[str, Any],
                    network: torch.nn.Module) -> Path:
    """Write config.json and meta.json (JSON, indent 2) and model.pt (state dict on CPU) to ``directory``
    (created if missing); returns it."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(config, indent=2))
    (d / "meta.json").write_text(json.dumps(meta, indent=2))
    torch.save({k: v.detach().cpu() for k, v in network.state_dict().items()}, d / WEIGHTS)
    return d


def read_config(directory: str | Path) -> dict[str, Any]:
    """The config.json of a model directory."""
    return json.loads((Path(directory) / "config.json").read_text())


def read_meta(directory: str | Path) -> dict[str, Any]:
    """The meta.json of a model directory."""
    return json.loads((Path(directory) / "meta.json").read_text())


def load_weights(network: torch.nn.Module, directory: str | Path) -> torch.nn.Module:
    """Load model.pt (CPU, tensors only) into ``network``; returns it."""
    network.load_state_dict(torch.load(Path(directory) / WEIGHTS, map_location="cpu", weights_only=True))
    return network
