"""Stage ``detect``: run the detector over every selected frame of every view of every sequence.

Writes ``detect/<subject>/<sequence>.h5`` per sequence:
- ``keypoints`` (C, T, J, 3) float32 ``[x, y, score]`` in pixels (distorted image coordinates), NaN where missing;
- ``frames`` (T,) int64 frame numbers (from 0); ``cameras`` (C,) camera names (the view axis order);
- attributes: ``subject``, ``action``, ``sequence``, ``rig`` (the rig file JSON), ``detector`` and ``source``
  settings (JSON), ``config_hash``.
"""

from __future__ import annotations

import json
import logging
import time

import h5py
import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig

from build_h3wb import skeleton
from build_h3wb.artifacts import StageDir, atomic_h5
from build_h3wb.cameras import Rig, rig_from_dict
from build_h3wb.detectors.base import check_detections
from build_h3wb.stages.common import build_dir, make_source, progress

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict:
    """Detect on every sequence not yet done; returns the counts written to the manifest."""
    source = make_source(cfg)
    detector = instantiate(cfg.detector, _convert_="all")
    stage_config = {
        "source": source.describe(),
        "detector": detector.describe(),
        "batch_size": int(cfg.detect.batch_size),
        "chunk_frames": int(cfg.detect.chunk_frames),
    }
    sd = StageDir(build_dir(cfg), "detect", stage_config, overwrite=cfg.build.overwrite)
    sd.check_compatible()
    sequences = source.sequences()
    done, computed, frames_total = 0, 0, 0
    t0 = time.perf_counter()
    for seq in progress(sequences, desc="detect", unit="seq"):
        path = sd.sequence_path(seq.subject, seq.name)
        frames = source.frames(seq)
        if sd.is_done(path):
            done += 1
            continue
        rig = source.rig(seq)
        C, T, J = len(rig), len(frames), skeleton.NUM_KEYPOINTS
        with atomic_h5(path, sd.unit_attrs(unit(seq), rig=rig.to_dict())) as f:
            f.create_dataset("frames", data=frames)
            f.create_dataset("cameras", data=np.array(rig.names, dtype=h5py.string_dtype()))
            ds = f.create_dataset("keypoints", shape=(C, T, J, 3), dtype=np.float32, chunks=(1, min(T, 256), J, 3))
            chunk = int(cfg.detect.chunk_frames)
            for c, view in enumerate(rig.names):
                for s in range(0, T, chunk):
                    offset = s
                    for batch in source.batches(seq, view, frames[s : s + chunk], int(cfg.detect.batch_size)):
                        B = len(batch.frames)
                        ds[c, offset : offset + B] = check_detections(detector(batch), B, detector.name)
                        offset += B
        computed += 1
        frames_total += T * len(rig)
    dt = time.perf_counter() - t0
    counts = {"sequences": len(sequences), "computed": computed, "resumed": done, "view_frames": frames_total,
              "seconds": round(dt, 2), "frames_per_second": round(frames_total / dt, 1) if computed else None}
    log.info("detect: %d sequences (%d computed, %d already done), %d view-frames in %.1f s",
             len(sequences), computed, done, frames_total, dt)
    sd.write_manifest(counts, units=[unit(s) for s in sequences])
    return counts


def unit(seq) -> dict:
    """A sequence as a manifest entry."""
    return {"subject": seq.subject, "action": seq.action, "sequence": seq.name}


def read_rig(attrs: dict, path: str) -> Rig:
    """The rig stored in a detection artifact's attributes."""
    return rig_from_dict(json.loads(attrs["rig"]), source=f"{path} (attribute 'rig')")
