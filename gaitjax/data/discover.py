"""Finding gait trials in a folder tree: AddBiomechanics `.b3d` files and OpenSim trial folders.

An OpenSim trial is an IK `.mot` (columns = coordinates of an `.osim`) paired with a ground-reaction `.mot`
and the nearest `.osim` whose coordinates cover the IK columns. Only headers are read here.
"""

from __future__ import annotations

import dataclasses
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from pathlib import Path

from gaitjax.data.errors import GaitDataError
from gaitjax.data.osim import parse_osim

# A ground force column in any naming the GRF reader accepts (`ground_force_vx`, `R_ground_force_px`, ...).
_FORCE_COLUMN_RE = re.compile(r"^(\d+_|[RL]_)?ground_force_(\w+_)?[vp][xyz]$")
_IK_SUFFIX_RE = re.compile(r"_(ik|kinematics|coordinates)$", re.IGNORECASE)
_GRF_SUFFIXES = ("_grf", "_forces", "_force", "_ground_reactions")
_MODEL_FOLDERS = ("Models", "models")
_MAX_HEADER_LINES = 400
SUBJECT_JSON = "_subject.json"


@dataclasses.dataclass(frozen=True)
class FoundTrial:
    """One trial found in a source tree (or one file that gives no trial, with `problem` saying why).

    Attributes:
        study: first path component under the source folder (the source's own name for files directly in
            it); for a `.b3d` directly under the source, its stem.
        subject: name of the folder holding the `.osim` (its parent when that folder is `Models/`); the stem
            for a `.b3d`.
        trial: IK file stem ("*" for a `.b3d`, whose trials are listed when it is read).
        kind: "opensim", "b3d", or "grf_only" (a GRF file no IK file pairs with).
        ik_path / grf_path / osim_path / b3d_path: source files (None when absent).
        subject_json: a `_subject.json` between the IK folder and the subject folder, if any.
        notes: pairing remarks (a stale ExternalLoads datafile, an ambiguous model choice, ...).
        problem: why this entry cannot become a trial ("" when it can): "no IK: ...", "unpaired: ...",
            "no model: ...".
    """

    study: str
    subject: str
    trial: str
    kind: str
    ik_path: Path | None = None
    grf_path: Path | None = None
    osim_path: Path | None = None
    b3d_path: Path | None = None
    subject_json: Path | None = None
    notes: tuple[str, ...] = ()
    problem: str = ""

    @property
    def name(self) -> str:
        return f"{self.study}/{self.subject}/{self.trial}"


def peek_columns(path: str | Path) -> tuple[str, ...] | None:
    """The column names of a storage file (the line after `endheader`), reading only the header.

    Returns:
        The columns (`time` included), or None when the file has no readable header.
    """
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for _ in range(_MAX_HEADER_LINES):
                line = f.readline()
                if not line:
                    return None
                if line.strip().lower() == "endheader":
                    break
            else:
                return None
            for line in f:
                if line.strip():
                    return tuple(line.split())
    except OSError:
        return None
    return None


def _is_grf(path: Path, columns: tuple[str, ...] | None) -> bool:
    if columns is not None:
        return any(_FORCE_COLUMN_RE.match(c) for c in columns)
    stem = path.stem.lower()
    return any(stem.endswith(s) for s in _GRF_SUFFIXES) or "ground_force" in stem


def _base(stem: str) -> str:
    """Trial base of an IK or GRF stem: `walk1_ik` -> `walk1`, `walk1_forces` -> `walk1`."""
    lower = stem.lower()
    for suffix in _GRF_SUFFIXES:
        if lower.endswith(suffix):
            return stem[: -len(suffix)]
    return _IK_SUFFIX_RE.sub("", stem)


def _external_loads_datafile(xml_path: Path) -> str | None:
    """The `<datafile>` of an ExternalLoads XML, or None when the file is not one."""
    try:
        root = ET.parse(xml_path).getroot()
    except (ET.ParseError, OSError):
        return None
    loads = root if root.tag == "ExternalLoads" else root.find(".//ExternalLoads")
    if loads is None:
        return None
    datafile = loads.findtext("datafile")
    return datafile.strip() if datafile and datafile.strip() else None


def _neighbour_folders(folder: Path) -> list[Path]:
    """The IK folder, then `ID/`/`IK/` siblings and children, where GRF partners may live."""
    out = [folder]
    for name in ("ID", "IK", "id", "ik"):
        out += [folder.parent / name, folder / name]
    return [f for f in dict.fromkeys(out) if f.is_dir()]


class _Tree:
    """Files of a source tree grouped by folder, with cached header and model look-ups."""

    def __init__(self, root: Path):
        self.root = root
        self.files: dict[Path, list[Path]] = {}
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            self.files[Path(dirpath)] = [
                Path(dirpath) / f for f in sorted(filenames) if not f.startswith(".")
            ]
        self._columns: dict[Path, tuple[str, ...] | None] = {}
        self._coords: dict[Path, frozenset[str] | None] = {}

    def of(self, folder: Path, suffix: str) -> list[Path]:
        return [p for p in self.files.get(folder, []) if p.suffix.lower() == suffix]

    def columns(self, path: Path) -> tuple[str, ...] | None:
        if path not in self._columns:
            self._columns[path] = peek_columns(path)
        return self._columns[path]

    def model_coordinates(self, path: Path) -> frozenset[str] | None:
        if path not in self._coords:
            try:
                self._coords[path] = frozenset(parse_osim(path).coordinates)
            except GaitDataError:
                self._coords[path] = None
        return self._coords[path]

    def ancestors(self, folder: Path) -> list[Path]:
        """folder, its parent, ... up to the source root (inclusive)."""
        out = [folder]
        while out[-1] != self.root and self.root in out[-1].parents:
            out.append(out[-1].parent)
        return out


def _pair_grf(tree: _Tree, ik: Path, grfs: set[Path]) -> tuple[Path | None, list[str]]:
    """GRF partner of an IK file: an ExternalLoads XML beside it first, then matching stems."""
    notes = []
    folder, base = ik.parent, _base(ik.stem).lower()
    n_ik_here = sum(1 for p in tree.of(folder, ".mot") if p not in grfs)
    for xml in tree.of(folder, ".xml"):
        if not (xml.stem.lower().startswith(base) or n_ik_here == 1):
            continue
        datafile = _external_loads_datafile(xml)
        if datafile is None:
            continue
        named = Path(datafile.replace("\\", "/"))
        for candidate in (folder / named, folder / named.name):
            if candidate.resolve() in grfs:
                return candidate.resolve(), notes
        notes.append(f"ExternalLoads {xml.name} names datafile {datafile!r}, which is not here")
    matches = [
        g
        for f in _neighbour_folders(folder)
        for g in tree.of(f, ".mot")
        if g in grfs and _base(g.stem).lower() == base
    ]
    if len(matches) > 1:
        notes.append(
            f"several GRF files match {ik.name}: {[m.name for m in matches]}; took {matches[0].name}"
        )
    return (matches[0] if matches else None), notes


def _pick_model(tree: _Tree, ik: Path) -> tuple[Path | None, list[str]]:
    """Nearest `.osim` (same folder, `Models/` sibling, parent, ...) covering the IK columns."""
    columns = tree.columns(ik)
    wanted = {c for c in (columns or ()) if c.lower() != "time"}
    best: tuple[int, Path] | None = None
    for level in tree.ancestors(ik.parent):
        folders = [level, *(level / m for m in _MODEL_FOLDERS)]
        if level == ik.parent:
            folders += [level.parent / m for m in _MODEL_FOLDERS]
        candidates = [p for f in dict.fromkeys(folders) for p in tree.of(f, ".osim")]
        scored = []
        for path in candidates:
            coords = tree.model_coordinates(path)
            if coords is not None:
                scored.append((len(wanted & coords), path))
        for score, path in scored:
            if best is None or score > best[0]:
                best = (score, path)
        full = [path for score, path in scored if wanted and score == len(wanted)]
        if full:
            notes = []
            if len(full) > 1:
                notes.append(
                    f"ambiguous model: {[p.name for p in full]} all cover the IK columns; took {full[0].name}"
                )
            return full[0], notes
    if best is None:
        return None, []
    return best[1], [f"no model covers all {len(wanted)} IK columns; {best[1].name} covers {best[0]}"]


def _study(root: Path, path: Path) -> str:
    rel = path.relative_to(root)
    return rel.parts[0] if len(rel.parts) > 1 else root.name


def _subject(tree: _Tree, osim: Path | None, ik: Path) -> str:
    folder = osim.parent if osim is not None else ik.parent
    if folder.name in (*_MODEL_FOLDERS, "IK", "ik") and folder != tree.root:
        folder = folder.parent
    return folder.name


def _subject_json(tree: _Tree, ik: Path, osim: Path | None) -> Path | None:
    """`_subject.json` in the IK folder or a parent, up to the subject folder (never in a sub-folder)."""
    stop = tree.root if osim is None else osim.parent
    if stop.name in _MODEL_FOLDERS and stop != tree.root:
        stop = stop.parent
    for folder in tree.ancestors(ik.parent):
        candidate = folder / SUBJECT_JSON
        if candidate in tree.files.get(folder, []):
            return candidate
        if folder == stop:
            break
    return None


def _discover_one(root: Path) -> list[FoundTrial]:
    tree = _Tree(root)
    mots = [p for folder in tree.files for p in tree.of(folder, ".mot") if "_pred___" not in p.name]
    grfs = {p for p in mots if _is_grf(p, tree.columns(p))}
    found, used_grfs = [], set()
    for ik in (p for p in mots if p not in grfs):
        grf, notes = _pair_grf(tree, ik, grfs)
        osim, model_notes = _pick_model(tree, ik)
        notes += model_notes
        problem = ""
        if osim is None:
            problem = "no model: no .osim in this folder, a Models/ sibling or any parent folder"
        elif grf is None:
            problem = (
                f"unpaired: no GRF file for {ik.name} (looked for an ExternalLoads .xml and "
                f"{_base(ik.stem)}_grf/_forces.mot here and in ID/ or IK/ folders); usable by predict"
            )
        if grf is not None:
            used_grfs.add(grf)
        found.append(
            FoundTrial(
                study=_study(root, ik),
                subject=_subject(tree, osim, ik),
                trial=ik.stem,
                kind="opensim",
                ik_path=ik,
                grf_path=grf,
                osim_path=osim,
                subject_json=_subject_json(tree, ik, osim),
                notes=tuple(notes),
                problem=problem,
            )
        )
    for grf in sorted(grfs - used_grfs):
        markers = [p.name for p in tree.of(grf.parent, ".trc")]
        found.append(
            FoundTrial(
                study=_study(root, grf),
                subject=grf.parent.name,
                trial=grf.stem,
                kind="grf_only",
                grf_path=grf,
                problem="no IK: ground reactions"
                + (f" and markers ({len(markers)} .trc)" if markers else "")
                + " but no inverse-kinematics .mot in this folder; run OpenSim IK first",
            )
        )
    for folder in tree.files:
        for b3d in tree.of(folder, ".b3d"):
            study = _study(root, b3d) if b3d.parent != root else b3d.stem
            found.append(FoundTrial(study=study, subject=b3d.stem, trial="*", kind="b3d", b3d_path=b3d))
    return found


def _dedupe(found: list[FoundTrial]) -> list[FoundTrial]:
    """Makes study/subject/trial names unique by appending the IK folder name (then a counter)."""
    seen: dict[str, int] = {}
    out = []
    for f in found:
        if f.name in seen and f.ik_path is not None:
            f = dataclasses.replace(f, trial=f"{f.trial}__{f.ik_path.parent.name}")
        while f.name in seen:
            seen[f.name] += 1
            f = dataclasses.replace(f, trial=f"{f.trial}_{seen[f.name]}")
        seen[f.name] = 0
        out.append(f)
    return out


def discover(sources: Sequence[str | Path] | str | Path) -> list[FoundTrial]:
    """Finds every trial under one or more source folders.

    Pairing (OpenSim folders): an IK `.mot` is any `.mot` without ground-force columns. Its GRF partner is
    the datafile of an ExternalLoads `.xml` beside it (when it exists here), otherwise the GRF `.mot` whose
    stem matches (`X_ik`/`X_IK`/`X` <-> `X_grf`/`X_forces`) in the same folder or `ID/`/`IK/` folders. Its
    model is the nearest `.osim` walking up (same folder, `Models/`, the parent's `Models/`, parent, ...)
    covering all IK columns; several at one level -> the first by name, noted as ambiguous.

    Args:
        sources: folders to search (a `.b3d` file path is accepted too).

    Returns:
        FoundTrial entries: trials, unpaired IK files, GRF files without IK, and one entry per `.b3d`,
        in a deterministic order (sources, then sorted paths).

    Raises:
        GaitDataError: a source that does not exist.
    """
    if isinstance(sources, (str, Path)):
        sources = [sources]
    found: list[FoundTrial] = []
    for source in sources:
        root = Path(source).resolve()
        if not root.exists():
            raise GaitDataError(
                "source does not exist (expected a folder of .b3d files or OpenSim trials)", root
            )
        if root.is_file():
            if root.suffix.lower() != ".b3d":
                raise GaitDataError("a source file must be a .b3d; give OpenSim trials as a folder", root)
            found.append(FoundTrial(study=root.stem, subject=root.stem, trial="*", kind="b3d", b3d_path=root))
            continue
        found += _discover_one(root)
    return _dedupe(found)


def source_files(trial: FoundTrial) -> list[str]:
    """The existing source paths of a found trial, for reports."""
    paths: Iterable[Path | None] = (
        trial.ik_path,
        trial.grf_path,
        trial.osim_path,
        trial.b3d_path,
        trial.subject_json,
    )
    return [str(p) for p in paths if p is not None]
