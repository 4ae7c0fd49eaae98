"""Stage ``export``: the selected poses as one HDF5 file, the official H3WB JSON files and two VideoPose3D npz.

Reads ``filter/`` (selection and quality), the poses it assessed (``build.poses``, default ``refine``) and
``complete`` (for the per-keypoint provenance) and the rig stored with the detections. Projects the poses as each
writer needs them (``build_h3wb.export.LazyViews``: a sequence or a block of samples at a time, so memory does not
grow with the export) and writes ``export/h3wb.h5``, ``export/json/*.json`` (layout in
``build_h3wb.export``; the I2D test input masked, its boolean masks in ``export/json/I2Dto3D_test_masks.npz``),
``export/h3wb_videopose3d.npz`` (the official H3WB npz layout, pickled) and ``export/h3wb_flat.npz`` (the same
poses, every subject, without pickles); the benchmark split
is configurable (default: train S1, S5, S6, S7; test S8). With ``export.images=true`` and a source with pixels
(Human3.6M, a rig), the exported frames of every view are cut out of the videos to ``export/images/`` at the
``image_path`` the JSON files name (``S1/Images/Walking 1.54138969/frame_0005.jpg``); present images are kept.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from build_h3wb.artifacts import BuildDirError, StageDir, open_h5
from build_h3wb.build import Build, read_rig
from build_h3wb.export import (
    ExportSequence,
    LazyViews,
    Provenance,
    StoredPoses,
    write_flat_npz,
    write_h3wb_json,
    write_hdf5,
    write_images,
    write_official_npz,
)
from build_h3wb.stages.common import frame_chunks, make_source

log = logging.getLogger(__name__)

#: Frames of a pose file read at once for the provenance of its kept poses.
_CHUNK_FRAMES = 4096


def run(cfg: DictConfig) -> dict:
    """Export the selected poses; returns the counts."""
    build = Build.from_config(cfg)
    root = build.root
    inputs = build.inputs("export")
    sel = inputs["filter"]
    pose_stage = sel["config"]["poses"]  # the pose stage the filter assessed
    if pose_stage != build.poses:
        raise BuildDirError(f"filter in {root} assessed '{pose_stage}' poses but build.poses={build.poses}: rerun "
                            f"`build-h3wb stage=filter build.dir={root} build.poses={build.poses}` or set "
                            f"build.poses={pose_stage}")
    ecfg = cfg.export
    split = {s: "train" for s in ecfg.train_subjects} | {s: "test" for s in ecfg.test_subjects}
    sd = StageDir(root, "export", {"split": split, "bbox_margin": ecfg.bbox_margin,
                                   "rgb_test_seed": ecfg.rgb_test_seed, "decimals": ecfg.decimals,
                                   "i2d_mask_seed": ecfg.i2d_mask_seed,
                                   "poses": pose_stage}, overwrite=cfg.build.overwrite,
                  upstream={"filter": sel["config_hash"]})
    sd.check_compatible()
    sequences = read_sequences(root, sel["units"], pose_stage)
    if not sequences:
        raise RuntimeError(f"the filter kept no pose in {root}; loosen the filter thresholds")
    sd.root.mkdir(parents=True, exist_ok=True)
    views = LazyViews(sequences, ecfg.bbox_margin)  # projected when a writer asks, never all held
    counts = {"hdf5": write_hdf5(sd.root / "h3wb.h5", sequences, split, views=views)}
    counts["json"] = write_h3wb_json(sd.root / "json", sequences, split, rgb_test_seed=ecfg.rgb_test_seed,
                                     decimals=ecfg.decimals if ecfg.decimals >= 0 else None,
                                     i2d_mask_seed=ecfg.i2d_mask_seed, views=views)
    counts["i2d_test_masks"] = counts["json"]["samples"]["I2Dto3D_test_2d.json"]
    counts["videopose3d"] = write_official_npz(sd.root / "h3wb_videopose3d.npz", sequences, split, views=views)
    counts["flat_npz"] = write_flat_npz(sd.root / "h3wb_flat.npz", sequences, views=views)
    del views
    for seq in sequences:  # the pose files the writers opened
        seq.keypoints_3d.close()
    if ecfg.images:
        counts["images"] = write_images(make_source(cfg), sequences, sd.root / "images", ecfg.jpeg_quality)
        if counts["images"]["no_pixels"]:
            log.warning("export.images=true, but the %s source has no pixels: no images cut", cfg.data._target_)
        else:
            log.info("export: %d images written to %s (%d already there, %d views failed)",
                     counts["images"]["written"], sd.root / "images", counts["images"]["present"],
                     len(counts["images"]["failed_views"]))
    n = counts["hdf5"]["poses"]
    log.info("export: %d poses (%d images) to %s: h3wb.h5, json/ (%s), h3wb_videopose3d.npz, h3wb_flat.npz", n,
             n * len(sequences[0].rig), sd.root, ", ".join(f"{k} {v}" for k, v in counts["hdf5"].items()
                                                               if k != "poses"))
    sd.write_manifest(counts, units=sel["units"])
    return counts


def read_sequences(root: Path, units: list[dict], pose_stage: str) -> list[ExportSequence]:
    """The selected poses of every filter unit (``subject``, ``action``, ``sequence``) with quality, provenance and rig.

    Args:
        root: the build directory.
        units: the filter manifest's units.
        pose_stage: the stage whose ``keypoints_3d`` are exported (``refine`` or ``complete``).

    Returns:
        One :class:`~build_h3wb.export.ExportSequence` per unit with at least one selected pose.
    """
    sequences = []
    for u in units:
        subject, name = u["subject"], u["sequence"]
        with open_h5(root / "filter" / subject / f"{name}.h5") as f:
            keep = f["selected"][:]
            quality = f["quality"][:]
        if not keep.any():
            continue
        pose_path = root / pose_stage / subject / f"{name}.h5"
        with open_h5(pose_path) as fp, open_h5(root / "complete" / subject / f"{name}.h5") as fc:
            T, J = fp["keypoints_3d"].shape[:2]
            frames = fp["frames"][:]
            prov = np.empty((int(keep.sum()), J), dtype=np.uint8)  # (T_kept, J): the kept rows, a chunk at a time
            done = 0
            for read, _, _ in frame_chunks(T, _CHUNK_FRAMES):
                mine = keep[read]
                refined = fp["refined"][read][mine] if "refined" in fp else np.zeros((int(mine.sum()), J), bool)
                p = np.full(refined.shape, Provenance.TRIANGULATED, dtype=np.uint8)
                p[fc["filled"][read][mine]] = Provenance.COMPLETED
                p[refined] = Provenance.REFINED
                prov[done : done + len(p)] = p
                done += len(p)
        with open_h5(root / "detect" / subject / f"{name}.h5") as f:
            rig = read_rig(dict(f.attrs), str(f.filename))
        # the poses stay in the build (read when a writer needs them): memory does not grow with the dataset
        poses = StoredPoses(pose_path, "keypoints_3d", np.flatnonzero(keep))
        sequences.append(ExportSequence(subject=subject, action=u["action"], sequence=name, frames=frames[keep],
                                        keypoints_3d=poses, provenance=prov, quality=quality[keep],
                                        rig=rig))
        poses.close()
    return sequences
