"""Score a predictions file against an H3WB test ground-truth file, and write results tables.

Predictions are read by :func:`load_predictions` from JSON (the official layout ``{"<id>": {"keypoints_3d":
{"0": {"x", "y", "z"}, ...}}}`` or the simpler ``{"<id>": [[x, y, z], ...]}``) or HDF5 (datasets ``ids`` (N,) and
``keypoints_3d`` (N, J, 3)), millimetres in the ground truth's frame (H3WB: the world pose rotated into the camera's
axes). :func:`score_predictions` matches them by sample id to a ground-truth file such as ``2Dto3D_test_3d.json``
and applies :func:`build_h3wb.leaderboard.metrics.score_all`.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from build_h3wb import skeleton
from build_h3wb.artifacts import atomic_h5, atomic_path, write_json
from build_h3wb.export import H3WB_FILES, load_h3wb_json
from build_h3wb.export.h3wb_json import read_sample_object
from build_h3wb.leaderboard.metrics import OFFICIAL_KEYS, UNOFFICIAL_KEYS, check_complete, score_all

log = logging.getLogger(__name__)

#: H3WB tasks; the ground truth of task ``t`` is ``<t>_test_3d.json``.
TASKS: tuple[str, ...] = ("2Dto3D", "I2Dto3D", "RGBto3D")

#: Table columns: result key -> header. The asterisk marks the unofficial metric (see the table's footnote).
TABLE_COLUMNS: dict[str, str] = {
    "whole": "whole",
    "body": "body",
    "face": "face",
    "hands": "hands",
    "face_aligned": "face aligned",
    "hands_aligned": "hands aligned",
    "pa_whole": "PA whole*",
}
TABLE_FOOTNOTE = "MPJPE in mm, mid-hip centred (H3WB leaderboard). \\* Procrustes-aligned with scale: not official."


def _norm_id(value: Any) -> str:
    """A sample id as a string; decimal integers lose leading zeros and spaces (``" 004"`` -> ``"4"``)."""
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    text = str(value).strip()
    return str(int(text)) if text.isdigit() else text


def _sample_keypoints(path: Path, sid: str, sample: Any) -> list[list[float]]:
    """One sample of a JSON predictions file as a J x 3 nested list."""
    J = skeleton.NUM_KEYPOINTS
    if isinstance(sample, Mapping):
        kp = next((sample[k] for k in ("keypoints_3d", "keypont_3d") if k in sample), None)
        if kp is None:
            raise ValueError(f"{path}: sample {sid!r} has no 'keypoints_3d' (keys {sorted(sample)[:5]})")
    else:
        kp = sample
    if isinstance(kp, Mapping):
        try:
            return [[float(kp[str(j)][a]) for a in ("x", "y", "z")] for j in range(J)]
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path}: sample {sid!r} 'keypoints_3d' lacks joint/axis {err} "
                             f"(expected keys '0'..'{J - 1}' each with 'x', 'y', 'z')") from err
    return kp


def load_predictions(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a predictions file (JSON or HDF5; see the module docstring).

    Args:
        path: ``.json`` file, or an HDF5 file (``.h5``, ``.hdf5``) with datasets ``ids`` and ``keypoints_3d``.

    Returns:
        ``ids`` (N,) str (decimal ids without leading zeros) and ``kp3d`` (N, J, 3) float64 millimetres, in file
        order.
    """
    path = Path(path)
    J = skeleton.NUM_KEYPOINTS
    if path.suffix.lower() == ".json":
        data = read_sample_object(path, "prediction")
        raw_ids = list(data)
        rows = [_sample_keypoints(path, sid, data[sid]) for sid in raw_ids]
        try:
            kp3d = np.asarray(rows, dtype=np.float64).reshape(len(rows), -1, 3) if rows else np.empty((0, J, 3))
        except (ValueError, TypeError) as err:
            raise ValueError(f"{path}: predictions must be J x 3 numbers per sample ({err})") from err
    else:
        try:
            with h5py.File(path, "r") as f:
                for key in ("ids", "keypoints_3d"):
                    if key not in f:
                        raise ValueError(f"{path}: dataset {key!r} is missing (found {sorted(f.keys())})")
                raw_ids = list(f["ids"][:])
                kp3d = np.asarray(f["keypoints_3d"][:], dtype=np.float64)
        except OSError as err:
            raise ValueError(f"{path}: neither .json nor a readable HDF5 file ({err})") from err
    if kp3d.ndim != 3 or kp3d.shape[1:] != (J, 3):
        raise ValueError(f"{path}: keypoints_3d has shape {kp3d.shape}, expected (N, J, 3) = (N, {J}, 3)")
    ids = np.array([_norm_id(i) for i in raw_ids], dtype=str)
    if len(ids) != len(kp3d):
        raise ValueError(f"{path}: {len(ids)} ids but {len(kp3d)} predictions")
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"{path}: duplicate sample ids {uniq[counts > 1][:5].tolist()}")
    return ids, kp3d


def save_predictions(
    path: str | os.PathLike, ids: np.ndarray, kp3d: np.ndarray, attrs: Mapping[str, Any] | None = None
) -> None:
    """Write predictions that :func:`load_predictions` reads back (atomic write).

    Args:
        path: ``.json`` for the simple JSON layout ``{"<id>": [[x, y, z], ...]}``; any other suffix (``.h5``) for
            HDF5 with datasets ``ids`` (N,) int64 and ``keypoints_3d`` (N, J, 3) float32.
        ids: (N,) integer sample ids.
        kp3d: (N, J, 3) millimetres, in the ground truth's frame.
        attrs: HDF5 file attributes (e.g. a stage's ``config_hash``); not stored in JSON.
    """
    path = Path(path)
    ids = np.asarray(ids)
    kp3d = np.asarray(kp3d)
    J = skeleton.NUM_KEYPOINTS
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"ids must be a 1-d integer array, got {ids.dtype} {ids.shape}")
    if kp3d.shape != (len(ids), J, 3):
        raise ValueError(f"kp3d must have shape (N, J, 3) = ({len(ids)}, {J}, 3), got {kp3d.shape}")
    if path.suffix.lower() == ".json":
        data = {str(int(i)): kp.tolist() for i, kp in zip(ids, kp3d.astype(np.float64))}
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(data), encoding="utf-8")
        return
    with atomic_h5(path, attrs or {}) as f:
        f.create_dataset("ids", data=ids.astype(np.int64))
        f.create_dataset("keypoints_3d", data=kp3d.astype(np.float32), compression="gzip")


#: Folds of the official cross-validation (``cvN`` in a predictions file name, N = 1..5).
NUM_FOLDS = 5


def cv_fold(num_samples: int, fold: int, views: int = 4, folds: int = NUM_FOLDS) -> np.ndarray:
    """Ids of one cross-validation fold of a training file with ids ``0 .. num_samples - 1``.

    As the official ``data_loader(cross_validation=N)``, fold N (1-based) is the N-th block of consecutive ids, but
    the block length is rounded down to a multiple of ``views`` (``views * (num_samples // views // folds)``), so a
    fold never splits the views of one pose (ids ``views k .. views k + views - 1``). Where ``num_samples // folds``
    is already a multiple of ``views`` (H3WB: 80,000 samples, 16,000 per fold) the folds are the official ones. The
    ids past ``folds`` full blocks are in no fold (trained on in every fold).

    Args:
        num_samples: samples in the training file.
        fold: 1 .. ``folds``.
        views: cameras per pose (ids of one pose are consecutive).
        folds: number of folds.

    Returns:
        (L,) int64 ascending ids, ``L`` a multiple of ``views``.
    """
    if not 1 <= int(fold) <= folds:
        raise ValueError(f"cross-validation fold must be 1..{folds}, got {fold}")
    length = views * (int(num_samples) // views // folds)
    if length == 0:
        raise ValueError(f"{num_samples} training samples are too few for {folds} folds of whole poses "
                         f"({views} views each)")
    return np.arange(length * (fold - 1), length * fold, dtype=np.int64)


def _gt_file(gt_path: Path, task: str, cross_validation: int = 0) -> Path:
    """The ground-truth file of ``task``: ``gt_path`` itself, or one in the folder ``gt_path``.

    In a folder: ``<task>_test_3d.json`` (``cross_validation`` 0), else the training file (``2Dto3D_train.json``;
    ``RGBto3D_train.json`` for RGB).
    """
    if gt_path.is_dir():
        if cross_validation:
            return gt_path / ("RGBto3D_train.json" if task == "RGBto3D" else "2Dto3D_train.json")
        return gt_path / f"{task}_test_3d.json"
    if gt_path.name in H3WB_FILES and not cross_validation and not gt_path.name.startswith(f"{task}_"):
        raise ValueError(f"ground truth {gt_path} belongs to another task than {task!r}; "
                         f"expected {task}_test_3d.json")
    return gt_path


def score_predictions(
    pred_path: str | os.PathLike, gt_path: str | os.PathLike, task: str, cross_validation: int = 0
) -> dict[str, Any]:
    """Score a predictions file against a ground-truth file, matching samples by id.

    As the official ``test_score``, only the ids the task needs are looked up: a file holding more (e.g. both test
    sets, or the whole training file in cross-validation) is scored on the ground truth's ids, with a log line
    saying how many were ignored. Predictions and ground truth must be complete (finite) on those ids.

    Args:
        pred_path: predictions (:func:`load_predictions`).
        gt_path: ground-truth JSON with ``keypoints_3d`` (read with :func:`build_h3wb.export.load_h3wb_json`),
            or a folder holding ``<task>_test_3d.json`` (and the training files).
        task: one of :data:`TASKS`.
        cross_validation: 0 scores the test split; N in 1..5 scores fold N of the training file (:func:`cv_fold`),
            the official ``cvN`` mode.

    Returns:
        :func:`~build_h3wb.leaderboard.metrics.score_all` (mm) plus ``task``, ``num_samples``,
        ``cross_validation``, ``ignored_ids`` and the files scored.

    Raises:
        ValueError: unknown task or fold, ground truth without 3D keypoints, predictions lacking some of the
            ground truth's ids (the message counts and names a few), or non-finite values.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {list(TASKS)}")
    pred_path, gt_file = Path(pred_path), _gt_file(Path(gt_path), task, int(cross_validation))
    gt = load_h3wb_json(gt_file)
    if gt["keypoints_3d"] is None:
        raise ValueError(f"{gt_file}: holds no 'keypoints_3d'; pass a ground-truth file such as {task}_test_3d.json")
    gt_kp = gt["keypoints_3d"]
    if cross_validation:
        fold = cv_fold(len(gt["ids"]), int(cross_validation))
        if not np.array_equal(gt["ids"], np.arange(len(gt["ids"]))):
            raise ValueError(f"{gt_file}: cross-validation needs the ids 0 .. N-1 of a training file")
        gt_kp = gt_kp[fold]
        gt_ids = np.array([str(i) for i in fold], dtype=str)
    else:
        gt_ids = np.array([_norm_id(i) for i in gt["ids"]], dtype=str)
    ids, kp3d = load_predictions(pred_path)
    missing = np.setdiff1d(gt_ids, ids)
    if missing.size:
        raise ValueError(
            f"{pred_path}: {missing.size} of the {gt_ids.size} ids of {gt_file}"
            f"{f' fold {cross_validation}' if cross_validation else ''} have no prediction "
            f"(e.g. {missing[:5].tolist()}); the file holds {ids.size} ids"
        )
    extra = ids.size - gt_ids.size
    if extra:
        log.info("%s: %d predictions are not in %s%s and are ignored (scored: the %d ground-truth ids)", pred_path,
                 extra, gt_file.name, f" fold {cross_validation}" if cross_validation else "", gt_ids.size)
    order = {sid: i for i, sid in enumerate(ids)}
    pred = kp3d[[order[sid] for sid in gt_ids]]  # (N, J, 3) in ground-truth order
    try:
        check_complete(pred, gt_kp)
        scores: dict[str, Any] = score_all(pred, gt_kp)
    except ValueError as err:
        raise ValueError(f"{pred_path}: {err}") from err
    log.info("%s on %s%s: whole %.2f mm over %d samples", pred_path, task,
             f" (cross-validation fold {cross_validation})" if cross_validation else "", scores["whole"], gt_ids.size)
    scores.update(task=task, num_samples=int(gt_ids.size), cross_validation=int(cross_validation),
                  ignored_ids=int(extra), predictions=str(pred_path), ground_truth=str(gt_file))
    return scores


def add_scores(table_dir: str | os.PathLike, name: str, scores: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Add (or replace) one row of the results table ``<table_dir>/scores.json`` and rewrite ``scores.{md,csv}``.

    Args:
        table_dir: the table's folder (``<build>/benchmark``).
        name: row name, e.g. ``"residual lifter (2Dto3D)"``.
        scores: :func:`score_predictions` output.

    Returns:
        The whole table, row name -> scores.
    """
    table_dir = Path(table_dir)
    table_path = table_dir / "scores.json"
    table: dict[str, dict[str, Any]] = {}
    if table_path.exists():
        try:
            table = json.loads(table_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{table_path}: not valid JSON ({err}); delete it to start a new table") from err
    table[name] = dict(scores)
    write_json(table_path, table)
    write_table(table, table_dir / "scores.md", table_dir / "scores.csv")
    return table


def _fmt(value: Any) -> str:
    return f"{value:.1f}" if isinstance(value, (int, float, np.floating)) and np.isfinite(value) else "-"


def format_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    """A Markdown table like the H3WB paper's: one row per method or task, one column per metric (mm, 1 decimal).

    Args:
        results: row name -> result dict (:func:`score_predictions` or ``score_all``); a missing metric shows ``-``.

    Returns:
        The table, then a footnote marking the unofficial Procrustes column.
    """
    keys = [*OFFICIAL_KEYS, *UNOFFICIAL_KEYS]
    lines = ["| method | " + " | ".join(TABLE_COLUMNS[k] for k in keys) + " |",
             "|---|" + "---:|" * len(keys)]
    for name, res in results.items():
        lines.append(f"| {name} | " + " | ".join(_fmt(res.get(k)) for k in keys) + " |")
    return "\n".join(lines) + "\n\n" + TABLE_FOOTNOTE + "\n"


def write_table(results: Mapping[str, Mapping[str, Any]], md_path: str | os.PathLike,
                csv_path: str | os.PathLike) -> None:
    """Write :func:`format_table` as Markdown and the full-precision numbers as CSV, both atomically.

    CSV columns: ``method``, the metric keys (official, then ``pa_whole``), ``num_samples`` (empty if unknown).
    """
    md_path, csv_path = Path(md_path), Path(csv_path)
    keys = [*OFFICIAL_KEYS, *UNOFFICIAL_KEYS, "num_samples"]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["method", *keys])
    for name, res in results.items():
        writer.writerow([name, *(res.get(k, "") for k in keys)])
    with atomic_path(md_path) as tmp:
        tmp.write_text(format_table(results), encoding="utf-8")
    with atomic_path(csv_path) as tmp:
        tmp.write_text(buf.getvalue(), encoding="utf-8")
