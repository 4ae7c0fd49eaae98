"""The official H3WB annotation files: writer (:func:`write_h3wb_json`) and reader (:func:`load_h3wb_json`).

Layout, ids and what each file holds: see :mod:`build_h3wb.export`. Every file is one JSON object
``{"<id>": sample}``; the writer fills a %-format template per sample (one C-level formatting call for its 400 to
800 numbers) and writes the text in large blocks, so the big training file is written at close to disk speed.
``RGBto3D_train.json`` has the same content as ``2Dto3D_train.json`` and is a hard link to it where the file system
allows (else a relative symbolic link, else a copy; the counts say which).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from build_h3wb import skeleton
from build_h3wb.artifacts import atomic_path
from build_h3wb.export.sequences import (
    SPLITS,
    ExportSequence,
    check_sequences,
    quality_order,
    skipped_poses,
    subject_rigs,
)
from build_h3wb.export.views import LazyViews, Views, check_views, image_relpath, sequence_views, view_rows
from build_h3wb.leaderboard.masking import i2d_masks, save_masks

log = logging.getLogger(__name__)

#: The H3WB JSON files :func:`write_h3wb_json` writes.
H3WB_FILES = (
    "2Dto3D_train.json",
    "RGBto3D_train.json",
    "2Dto3D_test_2d.json",
    "2Dto3D_test_3d.json",
    "I2Dto3D_test_2d.json",
    "I2Dto3D_test_3d.json",
    "RGBto3D_test_img.json",
    "RGBto3D_test_3d.json",
)
#: The boolean I2D test masks beside the JSON files (``build_h3wb.leaderboard.masking.load_masks``).
I2D_MASKS_FILE = "I2Dto3D_test_masks.npz"
#: Per-keypoint field of ``I2Dto3D_test_2d.json``'s ``keypoints_2d``: 1 = given, 0 = masked (x = y = 0).
CONFIDENCE_KEY = "confidence"
#: Samples formatted before one write to the file.
_BLOCK = 512


def _template(fields: tuple[str, ...], confidence: bool = False, keypoints: bool = True) -> str:
    """%-format template of one sample (a newline, then ``"<id>":{...}``), fields in the official order.

    Placeholders, in order: the id (``%d``), the JSON-quoted image path (``%s``), the four box corners (``%d``),
    x, y (and the confidence, ``%d``) of each 2D keypoint, x, y, z of each 3D keypoint (``%r``: the shortest text
    that reads back as the same float). Without ``keypoints`` the template stops before the keypoint fields (the
    block formatter appends them) and leaves the sample's object open.
    """
    J = skeleton.NUM_KEYPOINTS
    parts = []
    if "image_path" in fields:
        parts.append('"image_path":%s')
    if "bbox" in fields:
        parts.append('"bbox":{"x_min":%d,"y_min":%d,"x_max":%d,"y_max":%d}')
    if not keypoints:
        return '\n"%d":{' + ",".join(parts) + ("," if parts and any(k.startswith("keypoints") for k in fields) else "")
    if "keypoints_2d" in fields:
        joint = '{"x":%r,"y":%r' + (f',"{CONFIDENCE_KEY}":%d' if confidence else "") + "}"
        parts.append('"keypoints_2d":{' + ",".join(f'"{j}":{joint}' for j in range(J)) + "}")
    if "keypoints_3d" in fields:
        parts.append('"keypoints_3d":{' + ",".join(f'"{j}":{{"x":%r,"y":%r,"z":%r}}' for j in range(J)) + "}")
    return '\n"%d":{' + ",".join(parts) + "}"


def _format_sample(template: str, values: tuple) -> str:
    """One sample's text, or its head (id, image path, box): ``template % values``."""
    return template % values


def number_text(values: np.ndarray, decimals: int | None) -> np.ndarray:
    """ASCII text of many numbers at once: what ``repr(float(np.round(v, decimals)))`` writes, or ``str(int(v))``.

    Args:
        values: (B, K) finite numbers.
        decimals: decimals kept (trailing zeros dropped, one kept: ``12.3``, ``12.0``, ``-0.0`` as ``repr``
            writes them), or None for integers (``values`` rounded, no decimal point).

    Returns:
        (B, K, W) uint8: each number's characters, NUL (0) where it is shorter than ``W``; drop the NULs to read it.
    """
    values = np.asarray(values, dtype=np.float64)
    d = 1 if decimals is None or decimals == 0 else int(decimals)  # repr(12.0) is "12.0": one decimal at least
    r = np.round(values, 0 if decimals is None else int(decimals))
    n = np.rint(np.abs(r) * 10**d)  # (B, K) |value| in units of 10^-d
    top = int(n.max()) if n.size else 0
    n = n.astype(np.int32 if top < 2**31 else np.int64)
    ndig = max(d + 1, len(str(top)))  # digits of the largest value
    digits = np.empty((ndig, *n.shape), dtype=np.uint8)  # digits[p]: the digit of 10^p (units of 10^-d)
    rest = n
    for p in range(ndig):
        rest, digits[p] = np.divmod(rest, 10)
    width = 1 + (ndig - d) + (0 if decimals is None else 1 + d)
    out = np.zeros((*n.shape, width), dtype=np.uint8)  # (B, K, W) sign, integer digits, point, decimals
    out[..., 0] = np.where(np.signbit(r), ord("-"), 0)
    for col, p in enumerate(range(ndig - 1, d - 1, -1), start=1):  # integer digits, leading zeros dropped
        keep = (n >= 10**p) if p > d else True
        out[..., col] = np.where(keep, digits[p] + ord("0"), 0)
    if decimals is not None:
        out[..., ndig - d + 1] = ord(".")
        trailing = np.ones(n.shape, dtype=bool)  # all digits below are zero so far
        for p in range(d):  # decimals from the last: trailing zeros dropped, the first decimal kept
            trailing &= digits[p] == 0
            keep = ~trailing if p < d - 1 else True
            out[..., width - 1 - p] = np.where(keep, digits[p] + ord("0"), 0)
    return out


def _ascii_rows(texts: list[str]) -> np.ndarray:
    """Strings -> (B, L) uint8 ASCII, NUL-padded on the right."""
    raw = [t.encode("ascii") for t in texts]
    out = np.zeros((len(raw), max(map(len, raw), default=0)), dtype=np.uint8)
    for b, text in enumerate(raw):
        out[b, : len(text)] = np.frombuffer(text, dtype=np.uint8)
    return out


def _literals(fields: tuple[str, ...], confidence: bool) -> list[str]:
    """The K + 1 texts around the K keypoint numbers of a sample (2D x, y[, confidence] per joint, then 3D)."""
    J = skeleton.NUM_KEYPOINTS
    out: list[str] = []
    tail = ""
    for key, axes in (("keypoints_2d", ("x", "y", CONFIDENCE_KEY) if confidence else ("x", "y")),
                      ("keypoints_3d", ("x", "y", "z"))):
        if key not in fields:
            continue
        for j in range(J):
            for a, axis in enumerate(axes):
                head = (f',"{key}":{{' if tail else f'"{key}":{{') if j == 0 and a == 0 else ""
                lead = (f',"{j}":{{' if j else f'"{j}":{{') if a == 0 else ","
                out.append(tail + head + lead + f'"{axis}":')
                tail = ""
            tail = "}"
        tail = "}}"
    out.append(tail + "}")
    return out


class _Samples:
    """Formats the samples of one export: sequence ``i``, row ``t``, camera ``c`` with the chosen fields.

    With ``decimals`` set, the keypoints of a block of samples are formatted at once (:func:`number_text`, NUL
    padding dropped in one pass); with None each sample goes through its %-template (``%r``, exact floats). Both
    give the same text. The views of a block's poses are taken (or, from :class:`LazyViews`, projected) once per
    block.
    """

    def __init__(self, sequences: Sequence[ExportSequence], views: Views | LazyViews, decimals: int | None) -> None:
        self.sequences, self.views, self.decimals = sequences, views, decimals
        self.rigs = subject_rigs(sequences)
        self.templates: dict[tuple[tuple[str, ...], bool, bool], str] = {}
        self.literals: dict[tuple[tuple[str, ...], bool, int], tuple[np.ndarray, np.ndarray]] = {}

    def _template(self, fields: tuple[str, ...], confidence: bool, keypoints: bool) -> str:
        key = (fields, confidence, keypoints)
        if key not in self.templates:
            self.templates[key] = _template(fields, confidence, keypoints)
        return self.templates[key]

    def _round(self, a: np.ndarray) -> np.ndarray:
        return a if self.decimals is None else np.round(a, self.decimals)

    def _block_views(self, specs: list[tuple[int, int, int, int, np.ndarray | None]]) -> list[dict[str, np.ndarray]]:
        """The views of each sample's pose: one dict of (C, ...) arrays per spec (poses shared by cameras once)."""
        poses = {(i, t): None for _, i, t, _, _ in specs}
        rows = view_rows(self.views, self.sequences, np.array(list(poses), dtype=np.int64), self.rigs)
        for n, key in enumerate(poses):
            poses[key] = {k: v[n] for k, v in rows.items()}
        return [poses[(i, t)] for _, i, t, _, _ in specs]

    def _head_values(self, sid: int, i: int, t: int, c: int, fields: tuple[str, ...],
                     views: dict[str, np.ndarray]) -> list:
        seq = self.sequences[i]
        values: list = [sid]
        if "image_path" in fields:
            values.append(json.dumps(image_relpath(seq.subject, seq.sequence, seq.rig.names[c], int(seq.frames[t]))))
        if "bbox" in fields:
            values += views["bbox"][c].tolist()
        return values

    def text(self, sid: int, i: int, t: int, c: int, fields: tuple[str, ...], views: dict[str, np.ndarray],
             mask: np.ndarray | None = None) -> str:
        """The sample's JSON text from its pose's (C, ...) ``views``.

        ``mask`` (J,) bool hides keypoints (x = y = 0, confidence 0) and adds confidences.
        """
        values = self._head_values(sid, i, t, c, fields, views)
        if "keypoints_2d" in fields:
            uv = self._round(views["keypoints_2d"][c])  # (J, 2) px
            if mask is not None:
                xy = np.where(mask[:, None], 0.0, uv).tolist()  # (J, 2) masked keypoints at 0
                given = (~mask).astype(int).tolist()  # (J,) confidence 1 given, 0 masked
                values += [v for (x, y), g in zip(xy, given) for v in (x, y, g)]
            else:
                values += uv.ravel().tolist()
        if "keypoints_3d" in fields:
            values += self._round(views["keypoints_3d_rotated"][c]).ravel().tolist()  # (J, 3) mm, R X
        return _format_sample(self._template(fields, mask is not None, True), tuple(values))

    def block(self, specs: list[tuple[int, int, int, int, np.ndarray | None]], fields: tuple[str, ...]) -> str:
        """The texts of several samples, joined by commas; ``specs`` holds ``(sid, i, t, c, mask or None)``."""
        confidence = specs[0][4] is not None
        has_kp = any(k.startswith("keypoints") for k in fields)
        views = self._block_views(specs)
        if self.decimals is None or not has_kp:
            return ",".join(self.text(sid, i, t, c, fields, v, m) for (sid, i, t, c, m), v in zip(specs, views))
        head = self._template(fields, confidence, False)
        heads = [_format_sample(head, tuple(self._head_values(sid, i, t, c, fields, v)))
                 for (sid, i, t, c, _), v in zip(specs, views)]
        heads = [heads[0]] + ["," + h for h in heads[1:]]
        floats, ints = [], []
        if "keypoints_2d" in fields:
            uv = np.stack([v["keypoints_2d"][c] for (_, _, _, c, _), v in zip(specs, views)])  # (B, J, 2) px
            if confidence:
                masks = np.stack([m for *_, m in specs])  # (B, J) True = hidden
                uv = np.where(masks[..., None], 0.0, uv)
                ints.append(np.concatenate([uv, (~masks)[..., None]], axis=-1).reshape(len(specs), -1))
                floats.append(np.tile([True, True, False], uv.shape[1]))
            else:
                ints.append(uv.reshape(len(specs), -1))
                floats.append(np.ones(uv.shape[1] * 2, dtype=bool))
        if "keypoints_3d" in fields:
            rx = np.stack([v["keypoints_3d_rotated"][c] for (_, _, _, c, _), v in zip(specs, views)])  # (B, J, 3) mm
            ints.append(rx.reshape(len(specs), -1))
            floats.append(np.ones(rx.shape[1] * 3, dtype=bool))
        numbers, is_float = np.concatenate(ints, axis=1), np.concatenate(floats)  # (B, K), (K,)
        as_float = number_text(numbers[:, is_float], self.decimals)  # (B, Kf, Wf)
        as_int = number_text(numbers[:, ~is_float], None) if (~is_float).any() else None
        width = max(as_float.shape[-1], 0 if as_int is None else as_int.shape[-1])
        text = np.zeros(numbers.shape + (width,), dtype=np.uint8)  # (B, K, W)
        text[:, is_float, : as_float.shape[-1]] = as_float
        if as_int is not None:
            text[:, ~is_float, : as_int.shape[-1]] = as_int
        key = (fields, confidence, width)
        if key not in self.literals:
            self.literals[key] = _row_template(_literals(fields, confidence), width)
        template, slots = self.literals[key]  # (R,) uint8, (K, W) positions of the numbers
        body = np.tile(template, (len(specs), 1))  # (B, R)
        body[:, slots] = text
        rows = np.concatenate([_ascii_rows(heads), body], axis=1)
        flat = rows.ravel()
        return flat[flat != 0].tobytes().decode("ascii")


def _row_template(literals: list[str], width: int) -> tuple[np.ndarray, np.ndarray]:
    """The keypoint text of a sample with ``width`` NUL slots for each of the K = len(literals) - 1 numbers.

    Returns:
        ``(template, slots)``: (R,) uint8 ASCII with the literals in place and NUL in the slots, and (K, W) int64
        positions of the slots.
    """
    parts, slots, pos = [], [], 0
    for lit in literals[:-1]:
        raw = np.frombuffer(lit.encode("ascii"), dtype=np.uint8)
        parts += [raw, np.zeros(width, dtype=np.uint8)]
        slots.append(np.arange(pos + len(raw), pos + len(raw) + width))
        pos += len(raw) + width
    parts.append(np.frombuffer(literals[-1].encode("ascii"), dtype=np.uint8))
    return np.concatenate(parts), np.stack(slots)


class _SampleWriter:
    """Stream ``{"<id>": sample, ...}`` into a temporary file that replaces ``path`` when closed without error.

    Samples are added as ``(sid, i, t, c, mask)`` and formatted :data:`_BLOCK` at a time by :meth:`_Samples.block`.
    """

    def __init__(self, path: Path, samples: _Samples, fields: tuple[str, ...]) -> None:
        self.path, self.samples, self.fields = path, samples, fields
        self._ctx = atomic_path(path)
        self._fh = open(self._ctx.__enter__(), "w", encoding="utf-8", buffering=1 << 20)
        self._fh.write("{")
        self._block: list[tuple[int, int, int, int, np.ndarray | None]] = []
        self.count = 0

    def add(self, sid: int, i: int, t: int, c: int, mask: np.ndarray | None = None) -> None:
        """Append sample ``sid``: view ``c`` of row ``t`` of sequence ``i`` (``mask``: hidden keypoints, I2D)."""
        self._block.append((sid, i, t, c, mask))
        self.count += 1
        if len(self._block) >= _BLOCK:
            self._flush()

    def _flush(self) -> None:
        if self._block:
            self._fh.write(("," if self.count > len(self._block) else "") + self.samples.block(self._block,
                                                                                              self.fields))
            self._block = []

    def __enter__(self) -> _SampleWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            try:  # the last block: a failure here must not leave a partial file either
                self._flush()
                self._fh.write("\n}\n")
            except BaseException as err:
                self._fh.close()
                self._ctx.__exit__(type(err), err, err.__traceback__)
                raise
        self._fh.close()
        self._ctx.__exit__(exc_type, exc, tb)


def link_or_copy(src: Path, dst: Path) -> str:
    """Make ``dst`` show the content of ``src`` without writing it twice, atomically.

    Tries a hard link, then a relative symbolic link (same folder), then a byte copy.

    Returns:
        ``"hardlink"``, ``"symlink"`` or ``"copy"``.
    """
    src, dst = Path(src), Path(dst)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.link.tmp")
    for method in ("hardlink", "symlink"):
        tmp.unlink(missing_ok=True)
        try:
            if method == "hardlink":
                os.link(src, tmp)
            else:
                os.symlink(os.path.relpath(src, dst.parent), tmp)
        except OSError as err:
            log.info("%s: no %s to %s (%s)", dst, method, src.name, err)
            continue
        os.replace(tmp, dst)
        return method
    with atomic_path(dst) as out:
        shutil.copyfile(src, out)
    return "copy"


def write_h3wb_json(
    out_dir: str | os.PathLike,
    sequences: Sequence[ExportSequence],
    split: Mapping[str, str],
    bbox_margin: float = 0.1,
    rgb_test_seed: int | None = None,
    decimals: int | None = None,
    i2d_mask_seed: int = 0,
    views: Views | LazyViews | None = None,
) -> dict[str, Any]:
    """Write the H3WB annotation files (:data:`H3WB_FILES` and :data:`I2D_MASKS_FILE`) into ``out_dir``.

    Within each split the poses are ranked by quality (:func:`~build_h3wb.export.sequences.quality_order`); the
    pose of rank ``k`` seen by camera ``c`` (rig order) is sample ``C k + c``. Keypoints are written at full float64
    precision (about 120 kB per pose in the eight files) unless ``decimals`` rounds them. The I2D test input hides
    the keypoints of masks drawn with :func:`~build_h3wb.leaderboard.masking.i2d_masks` (``i2d_mask_seed``; row
    ``r`` = the ``r``-th I2D sample in ascending id order), stored beside it in :data:`I2D_MASKS_FILE`.

    Args:
        out_dir: output folder (created).
        sequences: the recordings, each with C cameras (4 for H3WB).
        split: subject -> ``"train"`` or ``"test"`` (H3WB: S1, S5, S6, S7 train and S8 test); poses of subjects
            not in it are left out and counted.
        bbox_margin: see :func:`~build_h3wb.export.views.keypoint_bbox`; ignored when ``views`` is given.
        rgb_test_seed: None keeps the RGB-to-3D test ids equal to the global test ids; an int permutes them with
            ``np.random.default_rng(rgb_test_seed)`` (the official test ids are permuted, so that they do not line
            up with the 2D tasks).
        decimals: None writes exact float64 values; an int rounds keypoints to that many decimals (px and mm).
        i2d_mask_seed: seed of the I2D test masks.
        views: :func:`~build_h3wb.export.views.sequence_views` of ``sequences`` (computed here when None), or their
            :class:`~build_h3wb.export.views.LazyViews` (projected a block at a time: memory independent of N).

    Returns:
        Counts: ``poses`` per split, ``samples`` per file, ``skipped_poses`` per subject not in the split,
        ``rgb_train`` (how ``RGBto3D_train.json`` was made: ``hardlink``, ``symlink`` or ``copy``) and
        ``i2d_masked_share`` (share of the I2D test keypoints hidden).
    """
    out_dir = Path(out_dir)
    C = check_sequences(sequences)
    views = sequence_views(sequences, bbox_margin) if views is None else views
    check_views(views, sequences)
    order = quality_order(sequences, split)
    skipped = skipped_poses(sequences, split)
    out_dir.mkdir(parents=True, exist_ok=True)
    samples = _Samples(sequences, views, decimals)
    every = ("image_path", "bbox", "keypoints_2d", "keypoints_3d")
    counts: dict[str, Any] = {"samples": {}}
    train = out_dir / "2Dto3D_train.json"
    with _SampleWriter(train, samples, every) as w:
        for k, (i, t) in enumerate(order["train"].tolist()):
            for c in range(C):
                w.add(C * k + c, i, t, c)
    counts["samples"][train.name] = w.count
    counts["rgb_train"] = link_or_copy(train, out_dir / "RGBto3D_train.json")
    counts["samples"]["RGBto3D_train.json"] = w.count

    test = order["test"].tolist()
    n_test = C * len(test)
    perm = np.arange(n_test) if rgb_test_seed is None else np.random.default_rng(rgb_test_seed).permutation(n_test)
    masks = i2d_masks(C * (len(test) // 2), i2d_mask_seed)  # (N_i2d, J) True = hidden
    rgb: list[tuple[int, int, int]] = [(0, 0, 0)] * n_test  # RGB test id -> (i, t, c)
    names = ("2Dto3D_test_2d.json", "2Dto3D_test_3d.json", "I2Dto3D_test_2d.json", "I2Dto3D_test_3d.json")
    truth = ("keypoints_2d", "keypoints_3d")
    with (_SampleWriter(out_dir / names[0], samples, ("keypoints_2d",)) as in2d,
          _SampleWriter(out_dir / names[1], samples, truth) as gt2d,
          _SampleWriter(out_dir / names[2], samples, ("keypoints_2d",)) as ini2d,
          _SampleWriter(out_dir / names[3], samples, truth) as gti2d):
        for k, (i, t) in enumerate(test):
            for c in range(C):
                sid = C * k + c
                if k % 2 == 0:
                    in2d.add(sid, i, t, c)
                    gt2d.add(sid, i, t, c)
                else:
                    ini2d.add(sid, i, t, c, mask=masks[ini2d.count])
                    gti2d.add(sid, i, t, c)
                rgb[perm[sid]] = (i, t, c)
    for w in (in2d, gt2d, ini2d, gti2d):
        counts["samples"][w.path.name] = w.count
    for name, fields in (("RGBto3D_test_img.json", ("image_path", "bbox")),
                         ("RGBto3D_test_3d.json", ("image_path", "bbox", "keypoints_3d"))):
        with _SampleWriter(out_dir / name, samples, fields) as w:
            for sid, (i, t, c) in enumerate(rgb):
                w.add(sid, i, t, c)
        counts["samples"][name] = w.count
    save_masks(out_dir / I2D_MASKS_FILE, masks, i2d_mask_seed)
    counts.update(poses={name: len(order[name]) for name in SPLITS}, skipped_poses=skipped,
                  i2d_masked_share=float(masks.mean()) if masks.size else 0.0)
    log.info("wrote H3WB JSON to %s: %s train poses, %s test poses (%d views each); RGBto3D_train.json by %s",
             out_dir, counts["poses"]["train"], counts["poses"]["test"], C, counts["rgb_train"])
    return counts


def read_sample_object(path: Path, what: str) -> dict[str, Any]:
    """A JSON file holding one object ``{"<id>": what}`` (an H3WB file, a predictions file); errors name the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected an object of sample id -> {what}, got {type(data).__name__}")
    return data


def load_h3wb_json(path: str | os.PathLike) -> dict[str, Any]:
    """Read an H3WB annotation file (official layout, or one written by :func:`write_h3wb_json`).

    Reads ``keypoints_2d`` / ``keypoints_3d`` keyed ``"0".."J-1"`` (the README's spelling ``keypont_*`` too),
    the 2D keypoints' :data:`CONFIDENCE_KEY` where the first sample has one (the masked I2D test input),
    ``bbox`` as ints and ``image_path``. A field is returned only when every sample has it.

    Returns:
        ``ids`` (N,) int64 ascending; ``keypoints_2d`` (N, J, 2) float64 pixels or None; ``confidence_2d``
        (N, J) float64 (0 = masked, its x = y = 0) or None; ``keypoints_3d`` (N, J, 3) float64 mm or None;
        ``bbox`` (N, 4) int64 ``[x_min, y_min, x_max, y_max]`` or None; ``image_path`` list of N str or None.
    """
    path = Path(path)
    data = read_sample_object(path, "sample")
    try:
        ids = sorted(int(k) for k in data)
    except ValueError as err:
        raise ValueError(f"{path}: sample ids must be integers in strings ('0', '1', ...): {err}") from err
    samples = [data[str(i)] for i in ids]
    J = skeleton.NUM_KEYPOINTS
    joint_keys = [str(j) for j in range(J)]

    def field(names: tuple[str, ...]) -> list[Any] | None:
        have = [next((s[n] for n in names if n in s), None) for s in samples]
        present = [v is not None for v in have]
        if not any(present):
            return None
        if not all(present):
            missing = ids[present.index(False)]
            raise ValueError(f"{path}: sample {missing!r} lacks {names[0]!r}, which other samples have")
        return have

    def keypoints(names: tuple[str, ...], axes: tuple[str, ...]) -> np.ndarray | None:
        values = field(names)
        if values is None:
            return None
        out = np.empty((len(values), J, len(axes)), dtype=np.float64)
        for n, kp in enumerate(values):
            try:
                out[n] = [[kp[j][a] for a in axes] for j in joint_keys]
            except (KeyError, TypeError) as err:
                raise ValueError(f"{path}: sample {ids[n]!r} field {names[0]!r} lacks joint/axis {err} "
                                 f"(expected keys '0'..'{J - 1}' with {axes})") from err
        return out

    bbox = field(("bbox",))
    if bbox is not None:
        try:
            bbox = np.array([[int(b[k]) for k in ("x_min", "y_min", "x_max", "y_max")] for b in bbox], dtype=np.int64)
        except (KeyError, TypeError) as err:
            raise ValueError(f"{path}: a bbox lacks {err} (expected x_min, y_min, x_max, y_max)") from err
    names_2d = ("keypoints_2d", "keypont_2d")
    first_2d = next((samples[0][n] for n in names_2d if samples and n in samples[0]), None)
    with_confidence = isinstance(first_2d, dict) and CONFIDENCE_KEY in first_2d.get("0", {})
    kp2d = keypoints(names_2d, ("x", "y", CONFIDENCE_KEY) if with_confidence else ("x", "y"))
    return {
        "ids": np.asarray(ids, dtype=np.int64),
        "keypoints_2d": kp2d if kp2d is None else kp2d[..., :2],
        "confidence_2d": kp2d[..., 2] if with_confidence else None,
        "keypoints_3d": keypoints(("keypoints_3d", "keypont_3d"), ("x", "y", "z")),
        "bbox": bbox,
        "image_path": field(("image_path",)),
    }

