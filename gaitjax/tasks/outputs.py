"""What `gaitjax predict` writes: an OpenSim GRF .mot with its ExternalLoads .xml, a force plot, a summary.

Every file is written to a temporary name in the destination folder and renamed into place, so a file is
either complete or absent.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

from gaitjax.data.storage import write_storage

SIDES = (("r", "calcn_r"), ("l", "calcn_l"))


def grf_columns() -> list[str]:
    """OpenSim's usual names: per foot a force (N), a point (m) and a torque (N·m) set, right first."""
    cols = []
    for side, _ in SIDES:
        cols += [f"ground_force_{side}_v{a}" for a in "xyz"]
        cols += [f"ground_force_{side}_p{a}" for a in "xyz"]
        cols += [f"ground_torque_{side}_{a}" for a in "xyz"]
    return cols


def write_grf_mot(path: Path, time_s: np.ndarray, grf_n: np.ndarray, cop_m: np.ndarray, name: str) -> Path:
    """GRF [T, 2, 3] N and COP [T, 2, 3] m (ground frame; feet r, l) as an OpenSim external-loads .mot.

    Free torques are written as 0 (the model does not estimate them).
    """
    n_t = time_s.shape[0]
    values = np.zeros((n_t, 18))
    for k in range(2):
        values[:, 9 * k : 9 * k + 3] = grf_n[:, k]
        values[:, 9 * k + 3 : 9 * k + 6] = cop_m[:, k]
    return write_storage(path, grf_columns(), time_s, values, in_degrees=False, name=name)


def _write_text_atomic(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_external_loads(path: Path, grf_mot: Path) -> Path:
    """An OpenSim 4 ExternalLoads .xml applying the two force sets of `grf_mot` to calcn_r and calcn_l."""
    forces = []
    for side, body in SIDES:
        forces.append(
            f"""			<ExternalForce name="grf_{side}">
				<applied_to_body>{body}</applied_to_body>
				<force_expressed_in_body>ground</force_expressed_in_body>
				<point_expressed_in_body>ground</point_expressed_in_body>
				<force_identifier>ground_force_{side}_v</force_identifier>
				<point_identifier>ground_force_{side}_p</point_identifier>
				<torque_identifier>ground_torque_{side}_</torque_identifier>
			</ExternalForce>"""
        )
    text = f"""<?xml version="1.0" encoding="UTF-8" ?>
<OpenSimDocument Version="40000">
	<ExternalLoads name="gaitjax_predicted_grf">
		<objects>
{chr(10).join(forces)}
		</objects>
		<groups />
		<datafile>{escape(grf_mot.name)}</datafile>
	</ExternalLoads>
</OpenSimDocument>
"""
    return _write_text_atomic(path, text)


def write_json(path: Path, doc: dict) -> Path:
    return _write_text_atomic(path, json.dumps(doc, indent=1, sort_keys=True, default=float) + "\n")


def plot_forces(
    path: Path, time_s: np.ndarray, grf_n: np.ndarray, mass_kg: float, title: str, sd_n=None
) -> Path:
    """Three panels (AP, vertical, ML) of both feet's GRF in %BW, with a ±1 SD band when `sd_n` is given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bw = mass_kg * 9.81 / 100.0
    fig, axes = plt.subplots(3, 1, figsize=(8, 7), sharex=True)
    for a, (axis_name, label) in enumerate(
        (("x", "anterior-posterior"), ("y", "vertical"), ("z", "medio-lateral"))
    ):
        ax = axes[a]
        for k, (side, colour) in enumerate((("right", "tab:red"), ("left", "tab:blue"))):
            y = grf_n[:, k, a] / bw
            ax.plot(time_s, y, color=colour, label=side)
            if sd_n is not None:
                s = sd_n[:, k, a] / bw
                ax.fill_between(time_s, y - s, y + s, color=colour, alpha=0.25, linewidth=0)
        ax.set_ylabel(f"{label} ({axis_name})\n%BW")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="upper right")
    axes[-1].set_xlabel("time (s)")
    fig.suptitle(title)
    fig.tight_layout()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        plt.close(fig)
    return path
