"""DET plots (normal-deviate axes, as ISO/IEC 19795-1 recommends).

Matplotlib is the optional extra ``plots``: every plot in the package gets it through
:func:`pyplot`, which names the extra when it is missing.
"""
from __future__ import annotations

from pathlib import Path
from statistics import NormalDist

import numpy as np

from appliance.errors import ApplianceError, ErrorCode
from appliance.evaluation import metrics

MISSING_MATPLOTLIB = "plots need matplotlib: pip install 'face-appliance[plots]'"

TICKS = [1e-5, 1e-4, 1e-3, 1e-2, 0.05, 0.2, 0.5]


def _probit(values: np.ndarray) -> np.ndarray:
    clipped = np.clip(values, 1e-6, 1 - 1e-6)
    inv = NormalDist().inv_cdf
    return np.array([inv(v) for v in clipped])


def pyplot():
    """``matplotlib.pyplot`` on the file-only Agg backend, or a clear error naming the extra."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ApplianceError(ErrorCode.DEPENDENCY_MISSING, MISSING_MATPLOTLIB) from None
    return plt


# the DET axes: false-accept rates down to 1e-5, false-reject rates down to 1e-3, up to 0.5
X_FLOOR, Y_FLOOR, AXIS_TOP = 1e-5, 1e-3, 0.5


def det_plot(curves: dict[str, tuple[np.ndarray, np.ndarray]], out: Path, title: str,
             xlabel: str = "false match rate (FMR)", ylabel: str = "false non-match rate (FNMR)") -> Path:
    """``curves``: label -> (genuine scores, impostor scores). Writes a PNG.

    Also for PAD (ISO/IEC 30107-3): bona fide scores as genuine, attack scores as impostor,
    with APCER / BPCER as the axis labels."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(6, 5), dpi=120)
    for label, (genuine, impostor) in curves.items():
        _, fmr, fnmr = metrics.det_curve(genuine, impostor)
        # a rate of 0 has no probit: draw it on the axis floor instead of dropping the point,
        # so a system without errors shows a curve along the axes, not an empty plot
        at_floor = (fmr < X_FLOOR) | (fnmr < Y_FLOOR)
        if at_floor.all():
            label = f"{label} (no errors in the plotted range)"
        axis.plot(_probit(np.clip(fmr, X_FLOOR, 1.0)), _probit(np.clip(fnmr, Y_FLOOR, 1.0)), label=label)
    ticks = _probit(np.array(TICKS))
    names = [f"{t:g}" for t in TICKS]
    axis.set_xticks(ticks, names)
    axis.set_yticks(ticks, names)
    axis.set_xlim(_probit(np.array([X_FLOOR]))[0], _probit(np.array([AXIS_TOP]))[0])
    axis.set_ylim(_probit(np.array([Y_FLOOR]))[0], _probit(np.array([AXIS_TOP]))[0])
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    axis.grid(True, alpha=0.3)
    axis.legend(loc="upper right")
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out)
    plt.close(figure)
    return out
