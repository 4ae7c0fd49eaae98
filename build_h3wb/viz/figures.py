"""matplotlib figures of a build: every view with its layers, contact sheets, 3D skeletons, a lifted photograph.

A single photograph goes through a detector and an I2D lifter in four panels (:func:`image_figure`: the crop, the
detection, the lifter's normalised input and the lifted 3D pose).

The functions take arrays and return figures or write PNG files; ``stages/pictures.py`` gathers the arrays from the
build directory. Figures are made with matplotlib's ``Figure`` API (:func:`new_figure`, no pyplot state), so
library code never touches a global figure manager or a GUI backend. The layers come from ``viz.overlays``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from build_h3wb import skeleton
from build_h3wb.artifacts import atomic_path
from build_h3wb.geometry.cameras import Camera, Rig
from build_h3wb.viz.overlays import FINAL_LAYERS, LAYER_STYLE, NEUTRAL_RGB, final_points, subject_window

# ----------------------------------------------------------------------------------------------------------------
# matplotlib figures of a build
# ----------------------------------------------------------------------------------------------------------------


def _plot_layers(ax: Any, layers: Mapping[str, np.ndarray]) -> None:
    """Draw one view's layers (layer -> (J, 2) pixels) on matplotlib axes: bones between final points, markers."""
    from matplotlib.collections import LineCollection

    final = final_points(layers)  # (J, 2)
    ok = np.isfinite(final).all(-1)
    bones = skeleton.BONES[ok[skeleton.BONES].all(1)]
    ax.add_collection(LineCollection(final[bones], colors="0.6", linewidths=0.6, zorder=1))
    for name, (color, marker) in LAYER_STYLE.items():
        if name in layers:
            uv = layers[name]
            ax.scatter(uv[:, 0], uv[:, 1], s=6 if name != "detected" else 14, c=color, marker=marker,
                       label=name, zorder=2, linewidths=0.6, gid=name)


def draw_views(rig: Rig, layers: Mapping[str, np.ndarray], path: str | Path, title: str = "",
               images: Sequence[np.ndarray | None] | None = None) -> None:
    """Write one PNG with every view and its layers (see :func:`view_layers`), bones drawn between final points.

    Args:
        rig: the C cameras.
        layers: layer -> (C, J, 2) pixels.
        path: output PNG.
        title: figure title.
        images: optional per view an (H, W, 3) uint8 frame to draw under the points (None: a blank view).
    """
    C = len(rig)
    cols = min(C, 2)
    rows = int(np.ceil(C / cols))
    fig = new_figure((5 * cols, 5 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for c, cam in enumerate(rig):
        ax = axes[c // cols][c % cols]
        w, h = cam.image_size
        if images is not None and images[c] is not None:
            ax.imshow(images[c])
        ax.set_xlim(0, w)
        ax.set_ylim(h, 0)
        ax.set_aspect("equal")
        _plot_layers(ax, {name: v[c] for name, v in layers.items()})
        ax.set_title(f"camera {cam.name}", fontsize=9)
        ax.tick_params(labelsize=7)
    for k in range(C, rows * cols):
        axes[k // cols][k % cols].axis("off")
    axes[0][0].legend(loc="lower right", fontsize=7, markerscale=1.5)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def sheet_figure(
    cam: Camera,
    layers: Mapping[str, np.ndarray],
    frames: np.ndarray,
    images: Sequence[np.ndarray | None] | None = None,
    columns: int = 4,
    title: str = "",
) -> tuple[Any, list]:
    """A contact sheet: one tile per frame of one camera, each with its layers (as :func:`draw_views`).

    Every tile shows the same window of the image: the box around all the sheet's final keypoints (the detections
    where there are none), with a margin (:func:`subject_window`), so the tiles line up and the motion shows.

    Args:
        cam: the camera (its image size bounds the window).
        layers: layer -> (N, J, 2) pixels in this camera, one row per tile (see :func:`camera_layers`).
        frames: (N,) frame numbers, the tiles' titles.
        images: per tile an (H, W, 3) uint8 RGB frame, or None (or None altogether) for a neutral background.
        columns: tiles per row.
        title: figure title.

    Returns:
        ``(fig, tiles)``: the figure and the N tile axes in frame order; their data coordinates are image pixels.
    """
    N = len(frames)
    J = skeleton.NUM_KEYPOINTS
    for name, uv in layers.items():
        if uv.shape != (N, J, 2):
            raise ValueError(f"layer {name!r}: expected ({N}, {J}, 2) pixels for {N} frames, got {uv.shape}")
    if images is not None and len(images) != N:
        raise ValueError(f"expected {N} images (one per frame), got {len(images)}")
    if N < 1 or columns < 1:
        raise ValueError(f"a contact sheet needs at least one frame and one column, got {N} frames, {columns} columns")
    final = final_points(layers)  # (N, J, 2)
    around = final if np.isfinite(final).any() else np.concatenate(list(layers.values()), axis=1)
    x0, y0, x1, y1 = subject_window(around, cam.image_size)
    cols = min(columns, N)
    rows = int(np.ceil(N / cols))
    tile_w = 3.0
    tile_h = float(np.clip(tile_w * (y1 - y0) / (x1 - x0), 1.0, 3 * tile_w))
    fig = new_figure((cols * tile_w, rows * (tile_h + 0.3) + 0.7))
    axes = fig.subplots(rows, cols, squeeze=False)
    tiles = []
    for n in range(rows * cols):
        ax = axes[n // cols][n % cols]
        if n >= N:
            ax.axis("off")
            continue
        if images is not None and images[n] is not None:
            ax.imshow(images[n])
        else:
            ax.set_facecolor(np.array(NEUTRAL_RGB) / 255)
        _plot_layers(ax, {name: v[n] for name, v in layers.items()})
        ax.set_xlim(x0, x1)
        ax.set_ylim(y1, y0)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"frame {int(frames[n])}", fontsize=8)
        tiles.append(ax)
    handles, labels = tiles[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, markerscale=2, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.35 / fig.get_figheight(), 1, 1))
    return fig, tiles


def draw_skeleton_3d(kp3d: np.ndarray, provenance: np.ndarray, path: str | Path, title: str = "") -> None:
    """Write a PNG of the 3D skeleton in world coordinates (mm, z up), keypoints coloured by provenance.

    Args:
        kp3d: (J, 3) world mm.
        provenance: (J,) uint8: 0 triangulated, 1 completed, 2 refined.
        path: output PNG.
        title: figure title.
    """
    fig = new_figure(figsize=(6, 6))
    ax = fig.add_subplot(projection="3d")
    for a, b in skeleton.BONES:
        if np.isfinite(kp3d[[a, b]]).all():
            ax.plot(*kp3d[[a, b]].T, "-", color="0.5", lw=0.7)
    for code, name in enumerate(FINAL_LAYERS):
        sel = provenance == code
        color, marker = LAYER_STYLE[name]
        ax.scatter(*kp3d[sel].T, s=6, c=color, marker=marker, label=name)
    _equal_3d(ax, kp3d)
    ax.set_xlabel("x (mm)")
    ax.set_ylabel("y (mm)")
    ax.set_zlabel("z (mm)")
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def _equal_3d(ax: Any, pts: np.ndarray) -> None:
    """Equal axis ranges around the finite points (N, 3)."""
    ok = np.isfinite(pts).all(-1)
    if ok.any():
        centre = pts[ok].mean(0)
        r = 0.6 * max(np.ptp(pts[ok], axis=0).max(), 1.0)
        ax.set_xlim(centre[0] - r, centre[0] + r)
        ax.set_ylim(centre[1] - r, centre[1] + r)
        ax.set_zlim(centre[2] - r, centre[2] + r)


# ----------------------------------------------------------------------------------------------------------------
# A single photograph through a detector and a lifter
# ----------------------------------------------------------------------------------------------------------------


def pinhole_camera(width: int, height: int, name: str = "image") -> Camera:
    """A plain pinhole camera for a photograph of unknown calibration.

    Focal length ``max(W, H)`` pixels (a 53 degree field of view across the longer side, a normal lens), principal
    point at the image centre, no distortion, at the world origin looking along +z. It only completes the
    :class:`~build_h3wb.sources.base.FrameBatch` an image detector receives: the lifter never sees it, since its
    input normalisation (mid-hip centre, body scale) removes the image position and scale of the person.

    Args:
        width: W, pixels.
        height: H, pixels.
        name: camera name.
    """
    f = float(max(width, height))
    K = np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])
    return Camera(name=name, image_size=(int(width), int(height)), K=K, dist=np.zeros(5), R=np.eye(3), t=np.zeros(3))


def lift_detection(
    kp: np.ndarray, model: Any, stats: Any, min_score: float = 0.3
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lift one person's 2D detection to 3D with a trained lifter; missing and low-scoring keypoints are the mask.

    Args:
        kp: (J, 3) ``[x, y, score]`` pixels, NaN where missing.
        model: a :class:`~build_h3wb.leaderboard.lifter.ResidualLifter` (an I2D one when keypoints are hidden).
        stats: its :class:`~build_h3wb.leaderboard.lifter.LifterStats`.
        min_score: keypoints scoring below this are hidden.

    Returns:
        ``(hidden, centred, pred)``: (J,) bool the mask (True = hidden); (J, 2) the visible keypoints centred on the
        mid-hip and divided by the body scale (``centre_and_scale_2d``; hidden ones 0), in body-scale units, y down;
        (J, 3) the lifted pose, mm, camera axes (x right, y down, z forward), mid-hip at the origin.
    """
    from build_h3wb.leaderboard.lifter import centre_and_scale_2d, predict

    J = skeleton.NUM_KEYPOINTS
    if kp.shape != (J, 3):
        raise ValueError(f"expected one person's keypoints ({J}, 3) [x, y, score], got {kp.shape}")
    with np.errstate(invalid="ignore"):
        hidden = ~(np.isfinite(kp).all(-1) & (kp[:, 2] >= min_score))  # (J,)
    body = skeleton.REPORT_PARTS["body"]
    if (~hidden[body]).sum() < 2:
        raise ValueError(f"only {int((~hidden[body]).sum())} body keypoints are detected with a score >= {min_score}; "
                         "the lifter's normalisation (mid-hip centre, body scale) needs at least 2")
    if hidden.any() and not model.cfg.i2d:
        raise ValueError(f"{int(hidden.sum())} keypoints are missing or score below {min_score}, but the lifter was "
                         "trained for 2Dto3D (every keypoint given); use an I2Dto3D lifter")
    kp2d = np.where(hidden[:, None], np.nan, kp[:, :2]).astype(np.float64)[None]  # (1, J, 2)
    centred = centre_and_scale_2d(kp2d, hidden[None])[0]  # (J, 2)
    pred = predict(model, stats, kp2d, hidden[None])[0]  # (J, 3) mm
    return hidden, centred, pred


def detection_box(kp: np.ndarray, image_size: tuple[int, int], margin: float = 0.15) -> tuple[int, int, int, int]:
    """The crop around a detection: the box of its keypoints, enlarged by ``margin`` of its size on every side.

    Args:
        kp: (J, 2+) pixels, NaN where missing.
        image_size: (W, H).
        margin: share of the box's width (height) added left and right (top and bottom).

    Returns:
        ``(x0, y0, x1, y1)`` integer pixels inside the image, ``x0 < x1``, ``y0 < y1``.
    """
    W, H = image_size
    uv = kp[:, :2]
    uv = uv[np.isfinite(uv).all(-1)]
    if not len(uv):
        raise ValueError("no detected keypoint to put a box around")
    lo, hi = uv.min(0), uv.max(0)
    pad = margin * np.maximum(hi - lo, 1.0)  # (2,)
    x0, y0 = np.floor(np.maximum(lo - pad, 0.0)).astype(int)
    x1, y1 = np.ceil(np.minimum(hi + pad, [W, H])).astype(int)
    return int(x0), int(y0), max(int(x1), int(x0) + 1), max(int(y1), int(y0) + 1)


def image_figure(
    crop: np.ndarray,
    kp_crop: np.ndarray,
    hidden: np.ndarray,
    centred: np.ndarray,
    mean_2d: np.ndarray,
    pred: np.ndarray,
    title: str = "",
) -> tuple[Any, list]:
    """Four panels of one photograph through a detector and an I2D lifter.

    1. the input crop; 2. the detection on the crop (blue: given to the lifter, red crosses: detected but scoring
    too low, so hidden); 3. the keypoints as the lifter receives them: centred on the mid-hip and divided by the body
    scale (body-scale units, y down); a hidden keypoint enters as 0 after standardisation by the training statistics,
    which is the training mean, so it is drawn there (red rings), over the training mean pose (light grey);
    4. the predicted 3D pose, mid-hip at the origin, mm (camera axes drawn with y up; red: keypoints that were
    hidden).

    Args:
        crop: (h, w, 3) uint8 RGB, the image crop.
        kp_crop: (J, 3) ``[x, y, score]`` the detection in crop pixels, NaN where missing.
        hidden: (J,) bool, the lifter's mask (True = hidden).
        centred: (J, 2) the lifter's centred and scaled input (see :func:`lift_detection`).
        mean_2d: (J, 2) the training mean of that input (``LifterStats.mean_2d``).
        pred: (J, 3) lifted pose, mm, camera axes (x right, y down, z forward), root-relative.
        title: figure title.

    Returns:
        ``(fig, axes)``: the figure and its four panels in order (the last is 3D). In panel 2 the scatter with
        ``gid`` ``"visible"`` holds the keypoints given to the lifter and ``"low_score"`` the others, in crop pixels.
    """
    J = skeleton.NUM_KEYPOINTS
    shapes = {"kp_crop": (kp_crop.shape, (J, 3)), "hidden": (hidden.shape, (J,)), "centred": (centred.shape, (J, 2)),
              "mean_2d": (mean_2d.shape, (J, 2)), "pred": (pred.shape, (J, 3))}
    bad = {k: v for k, v in shapes.items() if v[0] != v[1]}
    if bad or crop.ndim != 3:
        raise ValueError("image_figure: " + ", ".join(f"{k} has shape {a}, expected {e}" for k, (a, e) in bad.items())
                         + (f" crop has shape {crop.shape}, expected (h, w, 3)" if crop.ndim != 3 else ""))
    from matplotlib.collections import LineCollection

    fig = new_figure(figsize=(20, 5.6))
    axes = [fig.add_subplot(1, 4, k + 1) for k in range(3)] + [fig.add_subplot(1, 4, 4, projection="3d")]
    h, w = crop.shape[:2]
    found = np.isfinite(kp_crop).all(-1)  # (J,)
    given = found & ~hidden
    low = found & hidden
    bones = skeleton.BONES

    ax = axes[0]
    ax.imshow(crop)
    ax.set_title(f"1. input crop ({w} x {h} px)", fontsize=10)

    ax = axes[1]
    ax.imshow(crop)
    ax.add_collection(LineCollection(kp_crop[bones[found[bones].all(1)], :2], colors="w", linewidths=0.8, zorder=1))
    ax.scatter(*kp_crop[given, :2].T, s=10, c="tab:blue", edgecolors="k", linewidths=0.3, zorder=2, gid="visible",
               label=f"given to the lifter ({int(given.sum())})")
    ax.scatter(*kp_crop[low, :2].T, s=18, c="tab:red", marker="x", linewidths=0.8, zorder=2, gid="low_score",
               label=f"low score, hidden ({int(low.sum())})")
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.legend(loc="lower right", fontsize=7)
    ax.set_title(f"2. detection ({int(found.sum())} of {J} keypoints)", fontsize=10)

    ax = axes[2]
    shown = np.where(hidden[:, None], mean_2d, centred)  # (J, 2) what the network's input stands for
    ax.add_collection(LineCollection(mean_2d[bones], colors="0.85", linewidths=0.6, zorder=0))
    ax.add_collection(LineCollection(shown[bones[given[bones].all(1)]], colors="0.4", linewidths=0.7, zorder=1))
    ax.scatter(*shown[~hidden].T, s=8, c="tab:blue", zorder=2, gid="visible", label=f"visible ({int((~hidden).sum())})")
    ax.scatter(*shown[hidden].T, s=14, facecolors="none", edgecolors="tab:red", linewidths=0.6, zorder=2, gid="hidden",
               label=f"hidden: input 0 = training mean, mask 1 ({int(hidden.sum())})")
    ax.set_aspect("equal", adjustable="datalim")
    ax.autoscale_view()
    ax.invert_yaxis()
    ax.set_xlabel("x / body scale (mid-hip at 0)")
    ax.set_ylabel("y / body scale")
    ax.legend(loc="lower right", fontsize=7)
    ax.set_title("3. lifter input: centred on the mid-hip, / body scale", fontsize=10)

    ax = axes[3]
    xyz = np.stack([pred[:, 0], pred[:, 2], -pred[:, 1]], axis=1)  # (J, 3) x right, z forward, y up
    for a, b in bones:
        ax.plot(*xyz[[a, b]].T, "-", color="0.5", lw=0.7)
    ax.scatter(*xyz[~hidden].T, s=6, c="tab:blue", label="visible in the input")
    ax.scatter(*xyz[hidden].T, s=6, c="tab:red", label="hidden in the input")
    _equal_3d(ax, xyz)
    ax.view_init(elev=10, azim=-80)
    ax.set_xlabel("x (mm)")
    ax.set_ylabel("depth z (mm)")
    ax.set_zlabel("up, -y (mm)")
    ax.legend(fontsize=7)
    ax.set_title("4. lifted 3D pose (mid-hip at 0, mm)", fontsize=10)

    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig, axes


# ----------------------------------------------------------------------------------------------------------------
# matplotlib plumbing
# ----------------------------------------------------------------------------------------------------------------


def new_figure(figsize: tuple[float, float], **kwargs: Any):
    """A matplotlib ``Figure`` drawn with Agg, not registered with pyplot (nothing global, nothing to close)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, **kwargs)
    FigureCanvasAgg(fig)  # attaches itself as fig.canvas (draw, buffer_rgba)
    return fig


def save_figure(fig, path: str | Path, dpi: int = 100) -> None:
    """Write a figure as PNG atomically."""
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
