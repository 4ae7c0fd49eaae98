"""Pictures of a build: the views with detections and reprojected 3D keypoints, and the 3D skeleton.

The functions take arrays and write PNG files (matplotlib, Agg backend); ``stages/pictures.py`` gathers the arrays
of one frame from the build directory. Where the source has no pixels (the synthetic capture) the views are drawn
on blank canvases of the camera's image size.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from build_h3wb import skeleton
from build_h3wb.artifacts import atomic_path
from build_h3wb.cameras import Rig

#: Layer name -> (colour, marker) in the view overlays, drawn in this order.
LAYER_STYLE: dict[str, tuple[str, str]] = {
    "detected": ("tab:gray", "x"),
    "triangulated": ("tab:blue", "o"),
    "completed": ("tab:orange", "s"),
    "refined": ("tab:green", "^"),
}


def view_layers(rig: Rig, detections: np.ndarray, kp3d: np.ndarray, provenance: np.ndarray) -> dict[str, np.ndarray]:
    """The 2D points each view shows, per layer.

    Args:
        rig: the C cameras.
        detections: (C, J, 3) ``[x, y, score]`` pixels of one frame, NaN where missing.
        kp3d: (J, 3) final world keypoints, mm (NaN where missing).
        provenance: (J,) uint8: 0 triangulated, 1 completed, 2 refined.

    Returns:
        layer -> (C, J, 2) pixels (with lens distortion, as in the image), NaN where the layer has no point:
        ``detected`` (the detector's output), then the final 3D keypoints reprojected, split by provenance.
    """
    C, J = len(rig), skeleton.NUM_KEYPOINTS
    if detections.shape != (C, J, 3) or kp3d.shape != (J, 3) or provenance.shape != (J,):
        raise ValueError(f"expected detections ({C}, {J}, 3), kp3d ({J}, 3), provenance ({J},); got "
                         f"{detections.shape}, {kp3d.shape}, {provenance.shape}")
    proj = np.stack([cam.project(kp3d) for cam in rig])  # (C, J, 2)
    layers = {"detected": detections[..., :2].astype(np.float64)}
    for code, name in enumerate(("triangulated", "completed", "refined")):
        layers[name] = np.where((provenance == code)[None, :, None], proj, np.nan)
    return layers


def draw_views(rig: Rig, layers: Mapping[str, np.ndarray], path: str | Path, title: str = "",
               images: np.ndarray | None = None) -> None:
    """Write one PNG with every view and its layers (see :func:`view_layers`), bones drawn between final points.

    Args:
        rig: the C cameras.
        layers: layer -> (C, J, 2) pixels.
        path: output PNG.
        title: figure title.
        images: optional (C, H, W, 3) uint8 frames to draw under the points.
    """
    plt = pyplot()
    C = len(rig)
    cols = min(C, 2)
    rows = int(np.ceil(C / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 5 * rows), squeeze=False)
    final = np.full_like(layers["detected"], np.nan)  # (C, J, 2) the reprojected final keypoints, any provenance
    for k in ("triangulated", "completed", "refined"):
        if k in layers:
            final = np.where(np.isfinite(layers[k]), layers[k], final)
    has_final = np.isfinite(final[..., 0])  # (C, J)
    for c, cam in enumerate(rig):
        ax = axes[c // cols][c % cols]
        w, h = cam.image_size
        if images is not None:
            ax.imshow(images[c])
        ax.set_xlim(0, w)
        ax.set_ylim(h, 0)
        ax.set_aspect("equal")
        for a, b in skeleton.BONES:
            if has_final[c, a] and has_final[c, b]:
                ax.plot(final[c, [a, b], 0], final[c, [a, b], 1], "-", color="0.6", lw=0.6, zorder=1)
        for name, (color, marker) in LAYER_STYLE.items():
            if name in layers:
                uv = layers[name][c]
                ax.scatter(uv[:, 0], uv[:, 1], s=6 if name != "detected" else 14, c=color, marker=marker,
                           label=name, zorder=2, linewidths=0.6)
        ax.set_title(f"camera {cam.name}", fontsize=9)
        ax.tick_params(labelsize=7)
    for k in range(C, rows * cols):
        axes[k // cols][k % cols].axis("off")
    axes[0][0].legend(loc="lower right", fontsize=7, markerscale=1.5)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def draw_skeleton_3d(kp3d: np.ndarray, provenance: np.ndarray, path: str | Path, title: str = "") -> None:
    """Write a PNG of the 3D skeleton in world coordinates (mm, z up), keypoints coloured by provenance.

    Args:
        kp3d: (J, 3) world mm.
        provenance: (J,) uint8: 0 triangulated, 1 completed, 2 refined.
        path: output PNG.
        title: figure title.
    """
    plt = pyplot()
    fig = plt.figure(figsize=(6, 6))
    ax = fig.add_subplot(projection="3d")
    for a, b in skeleton.BONES:
        if np.isfinite(kp3d[[a, b]]).all():
            ax.plot(*kp3d[[a, b]].T, "-", color="0.5", lw=0.7)
    for code, name in enumerate(("triangulated", "completed", "refined")):
        sel = provenance == code
        color, marker = LAYER_STYLE[name]
        ax.scatter(*kp3d[sel].T, s=6, c=color, marker=marker, label=name)
    ok = np.isfinite(kp3d).all(-1)
    if ok.any():
        centre = kp3d[ok].mean(0)
        r = 0.6 * max(np.ptp(kp3d[ok], axis=0).max(), 1.0)
        ax.set_xlim(centre[0] - r, centre[0] + r)
        ax.set_ylim(centre[1] - r, centre[1] + r)
        ax.set_zlim(centre[2] - r, centre[2] + r)
    ax.set_xlabel("x (mm)")
    ax.set_ylabel("y (mm)")
    ax.set_zlabel("z (mm)")
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend (imported on first use)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path) -> None:
    """Write a figure as PNG atomically and close it."""
    plt = pyplot()
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
