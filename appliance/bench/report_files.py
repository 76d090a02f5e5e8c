"""The files every benchmark report writes: markdown, JSON and, with the plots extra, a PNG."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from appliance import json_text


def write_report_files(out_dir: Path, name: str, payload: Any, markdown: Callable[[str | None], str],
                       plot: Callable[[Path], bool], default: Callable[[Any], Any] = str) -> dict[str, Path]:
    """``name``.md (``markdown`` gets the plot's file name, or None when none was drawn),
    ``name``.json (``payload``) and ``name``.png when ``plot`` drew it; returns the paths by kind."""
    out_dir.mkdir(parents=True, exist_ok=True)
    figure = out_dir / f"{name}.png"
    plotted = plot(figure)
    files = {"markdown": out_dir / f"{name}.md", "json": out_dir / f"{name}.json"}
    files["markdown"].write_text(markdown(figure.name if plotted else None))
    files["json"].write_text(json_text.dumps(payload, indent=2, default=default))
    if plotted:
        files["plot"] = figure
    return files
