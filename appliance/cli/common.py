"""Helpers shared by the CLI commands."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance import json_text
from appliance.config import Config, load_config

if TYPE_CHECKING:  # the models' stack and the stores load for the commands that use them, not for every 'appliance'
    from appliance.pipeline import FacePipeline
    from appliance.stores.protected import ProtectedData


def config_from(args: argparse.Namespace) -> Config:
    """The command's configuration, read and validated once per command (main() reads it
    first, to set up logging, and keeps it on ``args``)."""
    loaded = getattr(args, "loaded_config", None)
    if loaded is None:
        loaded = load_config(Path(args.config) if args.config else None)
        args.loaded_config = loaded
    return loaded


def protected_data(config: Config, root: Path | None = None) -> ProtectedData:
    """The site's protected data (stores, keys, audit log) in ``root`` (default: the data folder)."""
    from appliance.stores.protected import ProtectedData

    return ProtectedData.from_config(config, root)


def pipeline_from(args: argparse.Namespace, config: Config | None = None) -> FacePipeline:
    from appliance.pipeline import FacePipeline

    config = config or config_from(args)
    return FacePipeline(config, embedder_pack=getattr(args, "pack", None))


def model_info(pipeline: FacePipeline) -> dict[str, Any]:
    pack = pipeline.embedder_pack
    return {"pack": pack.id, "version": pack.version, "licence": pack.licence, "commercial_use": pack.commercial_use}


def write_json(data: Any, out: str | None) -> None:
    text = json_text.dumps(data, indent=2, ensure_ascii=False, default=float)
    if out:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n", encoding="utf-8")
    else:
        sys.stdout.write(text + "\n")


def fmt_rate(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f} %"
