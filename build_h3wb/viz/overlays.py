"""What each view shows, drawn with OpenCV and numpy: layers, overlays on frames, MP4 videos of them.

The layers are the detections and the reprojected 3D keypoints by provenance; OpenCV is fast enough to draw every
frame of a sequence.

Every overlay shows the same layers in the same colours (:data:`LAYER_STYLE`): the detector's output, and the final
3D keypoints reprojected into the camera, split by provenance (triangulated, completed by the network, refined).
Where the source has no pixels (the synthetic capture) the views are drawn on a neutral background of the camera's
image size.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from build_h3wb import skeleton
from build_h3wb.artifacts import atomic_path
from build_h3wb.geometry.cameras import Camera, Rig

#: Layer name -> (colour, marker) in the view overlays, drawn in this order.
LAYER_STYLE: dict[str, tuple[str, str]] = {
    "detected": ("tab:gray", "x"),
    "triangulated": ("tab:blue", "o"),
    "completed": ("tab:orange", "s"),
    "refined": ("tab:green", "^"),
}
#: The layers of the final 3D keypoints, by provenance code (0 triangulated, 1 completed, 2 refined).
FINAL_LAYERS: tuple[str, ...] = ("triangulated", "completed", "refined")
#: RGB of the background where the source has no pixels.
NEUTRAL_RGB: tuple[int, int, int] = (230, 230, 230)
#: RGB of the bones between final keypoints (matplotlib's "0.6").
BONE_RGB: tuple[int, int, int] = (153, 153, 153)
_OUTLINE_RGB = (20, 20, 20)


# ----------------------------------------------------------------------------------------------------------------
# Layers: what each view shows
# ----------------------------------------------------------------------------------------------------------------


def camera_layers(
    cam: Camera, detections: np.ndarray, kp3d: np.ndarray, provenance: np.ndarray
) -> dict[str, np.ndarray]:
    """The 2D points one camera shows, per layer, for any number of frames.

    Args:
        cam: the camera.
        detections: (..., J, 3) ``[x, y, score]`` pixels in this camera, NaN where missing.
        kp3d: (..., J, 3) final world keypoints, mm (NaN where missing).
        provenance: (..., J) uint8: 0 triangulated, 1 completed, 2 refined.

    Returns:
        layer -> (..., J, 2) pixels (with lens distortion, as in the image), NaN where the layer has no point:
        ``detected`` (the detector's output), then the final 3D keypoints reprojected, split by provenance.
    """
    J = skeleton.NUM_KEYPOINTS
    lead = provenance.shape[:-1]
    if detections.shape != (*lead, J, 3) or kp3d.shape != (*lead, J, 3) or provenance.shape != (*lead, J):
        raise ValueError(f"expected detections {(*lead, J, 3)}, kp3d {(*lead, J, 3)}, provenance {(*lead, J)}; got "
                         f"{detections.shape}, {kp3d.shape}, {provenance.shape}")
    proj = cam.project(kp3d)  # (..., J, 2)
    layers = {"detected": detections[..., :2].astype(np.float64)}
    for code, name in enumerate(FINAL_LAYERS):
        layers[name] = np.where((provenance == code)[..., None], proj, np.nan)
    return layers


def view_layers(rig: Rig, detections: np.ndarray, kp3d: np.ndarray, provenance: np.ndarray) -> dict[str, np.ndarray]:
    """The 2D points each view shows, per layer (:func:`camera_layers` for every camera of one frame).

    Args:
        rig: the C cameras.
        detections: (C, J, 3) ``[x, y, score]`` pixels of one frame, NaN where missing.
        kp3d: (J, 3) final world keypoints, mm (NaN where missing).
        provenance: (J,) uint8: 0 triangulated, 1 completed, 2 refined.

    Returns:
        layer -> (C, J, 2) pixels (with lens distortion, as in the image), NaN where the layer has no point.
    """
    C, J = len(rig), skeleton.NUM_KEYPOINTS
    if detections.shape != (C, J, 3) or kp3d.shape != (J, 3) or provenance.shape != (J,):
        raise ValueError(f"expected detections ({C}, {J}, 3), kp3d ({J}, 3), provenance ({J},); got "
                         f"{detections.shape}, {kp3d.shape}, {provenance.shape}")
    per_view = [camera_layers(cam, detections[c], kp3d, provenance) for c, cam in enumerate(rig)]
    return {name: np.stack([v[name] for v in per_view]) for name in per_view[0]}


def final_points(layers: Mapping[str, np.ndarray]) -> np.ndarray:
    """(..., J, 2) the reprojected final keypoints whatever their provenance (NaN where none), from the layers."""
    final = np.full_like(layers["detected"], np.nan)
    for name in FINAL_LAYERS:
        if name in layers:
            final = np.where(np.isfinite(layers[name]), layers[name], final)
    return final


def layer_colours() -> dict[str, np.ndarray]:
    """Layer -> (3,) uint8 RGB of its :data:`LAYER_STYLE` colour."""
    from matplotlib.colors import to_rgb

    return {name: np.rint(np.array(to_rgb(colour)) * 255).astype(np.uint8) for name, (colour, _) in LAYER_STYLE.items()}


def subject_window(points: np.ndarray, image_size: tuple[int, int], margin: float = 0.1) -> tuple[int, int, int, int]:
    """The image window around the finite points, enlarged by ``margin`` of its larger side and clipped to the image.

    Args:
        points: (..., 2) pixels (NaN ignored).
        image_size: (W, H).
        margin: share of the window's larger side added on every side.

    Returns:
        ``(x0, y0, x1, y1)`` integer pixels, ``x0 < x1 <= W`` and ``y0 < y1 <= H``; the whole image when no point is
        finite.
    """
    W, H = image_size
    pts = points.reshape(-1, 2)
    pts = pts[np.isfinite(pts).all(-1)]
    if not len(pts):
        return 0, 0, int(W), int(H)
    lo, hi = pts.min(0), pts.max(0)
    pad = margin * max(float((hi - lo).max()), 1.0)
    x0, y0 = np.floor(np.maximum(lo - pad, 0)).astype(int)
    x1, y1 = np.ceil(np.minimum(hi + pad, [W, H])).astype(int)
    if x1 <= x0 or y1 <= y0:  # every point outside the image
        return 0, 0, int(W), int(H)
    return int(x0), int(y0), int(x1), int(y1)


# ----------------------------------------------------------------------------------------------------------------
# OpenCV overlay (videos)
# ----------------------------------------------------------------------------------------------------------------


def _cv2():
    import cv2  # noqa: PLC0415 (OpenCV is imported only where pixels are drawn)

    return cv2


def neutral_canvas(image_size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 RGB filled with :data:`NEUTRAL_RGB`, for an image size (W, H)."""
    W, H = image_size
    return np.full((int(H), int(W), 3), NEUTRAL_RGB, dtype=np.uint8)


def marker_stamp(marker: str, radius: int) -> np.ndarray:
    """Pixel offsets of a filled marker: (S, 2) int ``(dy, dx)`` around its centre.

    Args:
        marker: matplotlib's letter: ``o`` disk, ``s`` square, ``^`` triangle (apex up), ``x`` diagonal cross.
        radius: half size in pixels (>= 1).
    """
    r = max(int(radius), 1)
    d = np.arange(-r, r + 1)
    dy, dx = np.meshgrid(d, d, indexing="ij")  # (2r+1, 2r+1)
    if marker == "o":
        keep = dx**2 + dy**2 <= r * r + r
    elif marker == "s":
        s = max(1, round(0.8 * r))
        keep = (np.abs(dx) <= s) & (np.abs(dy) <= s)
    elif marker == "^":
        keep = np.abs(dx) <= 0.6 * (dy + r) + 0.5
    elif marker == "x":
        keep = np.abs(np.abs(dx) - np.abs(dy)) <= (1 if r >= 4 else 0)
    else:
        raise ValueError(f"unknown marker {marker!r}; expected one of o, s, ^, x")
    return np.stack([dy[keep], dx[keep]], axis=1)


def _paste(image: np.ndarray, uv: np.ndarray, stamp: np.ndarray, colour: Sequence[int]) -> None:
    """Paint ``stamp`` centred on every finite point of ``uv`` (K, 2) pixels, in place (vectorised, clipped)."""
    ok = np.isfinite(uv).all(-1)
    if not ok.any():
        return
    centre = np.rint(uv[ok]).astype(np.int64)[:, ::-1]  # (K, 2) row, column
    pix = (centre[:, None, :] + stamp[None]).reshape(-1, 2)  # (K * S, 2)
    H, W = image.shape[:2]
    inside = (pix[:, 0] >= 0) & (pix[:, 0] < H) & (pix[:, 1] >= 0) & (pix[:, 1] < W)
    image[pix[inside, 0], pix[inside, 1]] = colour


def overlay_radius(image_size: tuple[int, int]) -> int:
    """Marker radius in pixels of :func:`overlay` for an image size (W, H): 4 px at 1000 px."""
    return max(2, round(max(image_size) / 250))


def overlay(image: np.ndarray, layers: Mapping[str, np.ndarray], label: str = "") -> np.ndarray:
    """Draw one view's layers on a copy of its image with OpenCV (the video overlay).

    Bones join the final keypoints (grey lines), detections are grey crosses, the final keypoints filled markers with
    a dark outline in their provenance colour (:data:`LAYER_STYLE`), each drawn centred on the pixel nearest the
    point. ``label`` and a legend go in the top left corner.

    Args:
        image: (H, W, 3) uint8 RGB.
        layers: layer -> (J, 2) pixels in this image (see :func:`camera_layers`).
        label: a line of text (e.g. the frame number); empty: no text and no legend.

    Returns:
        (H, W, 3) uint8 RGB.
    """
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image: expected (H, W, 3) uint8 RGB, got shape {image.shape} and dtype {image.dtype}")
    J = skeleton.NUM_KEYPOINTS
    for name, uv in layers.items():
        if uv.shape != (J, 2):
            raise ValueError(f"layer {name!r}: expected ({J}, 2) pixels, got {uv.shape}")
    cv2 = _cv2()
    out = np.ascontiguousarray(image).copy()
    H, W = out.shape[:2]
    r = overlay_radius((W, H))
    final = final_points(layers)  # (J, 2)
    ok = np.isfinite(final).all(-1)
    bones = skeleton.BONES[ok[skeleton.BONES].all(1)]  # (K, 2) bones with both ends
    if len(bones):
        segs = np.rint(final[bones]).astype(np.int32)  # (K, 2, 2)
        cv2.polylines(out, list(segs[:, :, None, :]), False, BONE_RGB, max(1, r // 2), cv2.LINE_AA)
    colours = layer_colours()
    for name, (_, marker) in LAYER_STYLE.items():
        if name not in layers:
            continue
        if name != "detected":
            _paste(out, layers[name], marker_stamp(marker, r + 1), _OUTLINE_RGB)
        _paste(out, layers[name], marker_stamp(marker, r), colours[name])
    if label:
        _legend(out, label, r, [n for n in LAYER_STYLE if n in layers], colours)
    return out


def _legend(image: np.ndarray, label: str, r: int, names: list[str], colours: Mapping[str, np.ndarray]) -> None:
    """Write ``label`` and the layer legend in the top left corner, in place."""
    cv2 = _cv2()
    H, W = image.shape[:2]
    scale = max(W, H) / 1600
    thick = max(1, round(2 * scale))
    step = round(36 * scale) + 2 * r
    x, y = round(12 * scale) + r, round(36 * scale) + r

    def text(s: str, org: tuple[int, int], colour: Sequence[int]) -> None:
        cv2.putText(image, s, org, cv2.FONT_HERSHEY_SIMPLEX, scale, _OUTLINE_RGB, thick + 2, cv2.LINE_AA)
        cv2.putText(image, s, org, cv2.FONT_HERSHEY_SIMPLEX, scale, tuple(int(c) for c in colour), thick, cv2.LINE_AA)

    text(label, (x - r, y), (255, 255, 255))
    for name in names:
        y += step
        marker = LAYER_STYLE[name][1]
        centre = np.array([[x, y - step / 4]], dtype=np.float64)
        if name != "detected":
            _paste(image, centre, marker_stamp(marker, r + 1), _OUTLINE_RGB)
        _paste(image, centre, marker_stamp(marker, r), colours[name])
        text(name, (x + 2 * r, y), colours[name])


def write_video(path: str | Path, frames: Iterable[np.ndarray], fps: float) -> int:
    """Write RGB frames as an MP4 (OpenCV ``VideoWriter``, ``mp4v``), atomically.

    MPEG-4 needs even sizes: an odd width or height is padded by one neutral column or row on the right or bottom,
    so pixel coordinates are unchanged.

    Args:
        path: output ``.mp4``.
        frames: (H, W, 3) uint8 RGB images, all of one size.
        fps: frame rate written in the file.

    Returns:
        The number of frames written.
    """
    cv2 = _cv2()
    path = Path(path)
    if fps <= 0:
        raise ValueError(f"video frame rate must be > 0, got {fps}")
    writer, n, size = None, 0, None
    with atomic_path(path, suffix=".mp4") as tmp_path:  # the suffix picks the MP4 container
        tmp = str(tmp_path)
        try:
            for image in frames:
                if size is None:
                    size = image.shape[:2]
                    H, W = size[0] + size[0] % 2, size[1] + size[1] % 2
                    writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (W, H))
                    if not writer.isOpened():
                        raise RuntimeError(f"OpenCV cannot write an MP4 (mp4v) video to {path}")
                    canvas = np.empty((H, W, 3), dtype=np.uint8)
                    canvas[:] = NEUTRAL_RGB
                if image.shape != (*size, 3) or image.dtype != np.uint8:
                    raise ValueError(f"video frame {n}: expected {(*size, 3)} uint8 RGB like the first frame, got "
                                     f"{image.shape} {image.dtype}")
                canvas[: size[0], : size[1]] = image
                writer.write(cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
                n += 1
            if writer is None:
                raise ValueError(f"{path}: no frames to write")
        finally:
            if writer is not None:
                writer.release()
    return n
