"""OpenPifPaf's whole-body model (Zauss et al., ICCV-W 2021), the 2D detector H3WB was built with.

Images go through OpenPifPaf's own network and CIF/CAF decoder; only the preprocessing (optional resize, ImageNet
normalisation, centre padding to a multiple of 16 plus one, as ``openpifpaf.predict`` pads) runs here, batched on
the device, and the keypoints are mapped back to the pixels of the original image.

Checkpoints are pickled whole models. They are loaded with ``torch.load(..., weights_only=True)``: the pickle's
globals are listed first (without running anything) and only harmless ones are allow-listed for the load
(see :func:`safe_checkpoint_globals`), so a checkpoint cannot run code while it is read.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import logging
import pickle
import re
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

import numpy as np
import torch
import torch.nn.functional as F

from build_h3wb import skeleton
from build_h3wb.sources.base import FrameBatch

LOG = logging.getLogger(__name__)

#: ImageNet statistics OpenPifPaf normalises with (``openpifpaf.transforms.EVAL_TRANSFORM``).
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)
#: Padding: to a multiple of this plus one pixel, filled with this colour (``openpifpaf.transforms.CenterPadTight``).
_PAD_MULTIPLE = 16
_PAD_FILL = (124, 116, 104)

#: OpenPifPaf names face and hand keypoints by their 1-based COCO-WholeBody index and a part prefix.
_NUMBERED_PARTS = {"f": "face", "lh": "left_hand", "rh": "right_hand"}

#: Globals of numpy arrays (OpenPifPaf's head metas hold a standing pose as an array), under both numpy 1 and 2
#: module names; constructing arrays, dtypes and scalars runs no other code.
_NUMPY_GLOBALS = frozenset({
    "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
    "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar",
    "numpy.ndarray", "numpy.dtype",
})  # fmt: skip


class OpenPifPafDetector:
    """OpenPifPaf whole-body detector: ``(B, H, W, 3)`` RGB images in, ``(B, P, J, 3)`` keypoints out.

    The settings are documented, with their defaults, in ``build_h3wb.config.OpenPifPafDetectorConfig``. The
    checkpoint is checked when the detector is built (a registered name, or a file that exists); the network is
    loaded (and a registered checkpoint downloaded into torch's hub cache) on the first call, or by :meth:`load`.

    The decoder's instance threshold is a process-wide setting of OpenPifPaf's C++ extension; it is set to
    ``instance_threshold`` only during a call and restored afterwards (as is the level of OpenPifPaf's decoder
    logger, which would otherwise log every frame). Every other decoder setting keeps OpenPifPaf's defaults
    (nothing here changes them).
    """

    name = "openpifpaf"

    def __init__(
        self,
        *,
        checkpoint: str,
        device: str = "auto",
        batch_size: int = 8,
        long_edge: int = 0,
        max_people: int = 4,
        instance_threshold: float = 0.15,
        extra_safe_globals: Sequence[str] = (),
    ) -> None:
        openpifpaf = _import_openpifpaf()
        if int(batch_size) < 1:
            raise ValueError(f"detector.batch_size must be >= 1, got {batch_size}")
        if int(long_edge) < 0:
            raise ValueError(f"detector.long_edge must be 0 (native size) or a positive pixel count, got {long_edge}")
        if int(max_people) < 1:
            raise ValueError(f"detector.max_people must be >= 1, got {max_people}")
        if not 0.0 <= float(instance_threshold) <= 1.0:
            raise ValueError(f"detector.instance_threshold must be in [0, 1], got {instance_threshold}")
        self.checkpoint = str(checkpoint)
        self.device = resolve_device(device)
        self.batch_size = int(batch_size)
        self.long_edge = int(long_edge)
        self.max_people = int(max_people)
        self.instance_threshold = float(instance_threshold)
        self.extra_safe_globals = [str(g) for g in extra_safe_globals]

        # a registered name (downloaded on first use) or a local file that must exist now
        self.checkpoint_url: str | None = None
        self.checkpoint_path: Path | None = None
        if self.checkpoint in openpifpaf.CHECKPOINT_URLS:
            url = openpifpaf.CHECKPOINT_URLS[self.checkpoint]
            if url is openpifpaf.PRETRAINED_UNAVAILABLE:
                raise ValueError(f"OpenPifPaf has no pretrained weights for {self.checkpoint!r}; use one of "
                                 f"{_wholebody_names(openpifpaf)} or a local checkpoint file")
            self.checkpoint_url = str(url)
        else:
            path = Path(self.checkpoint).expanduser()
            if not path.is_file():
                raise FileNotFoundError(
                    f"OpenPifPaf checkpoint file {str(path)!r} does not exist (detector.checkpoint="
                    f"{self.checkpoint!r}); give an existing file or a registered OpenPifPaf whole-body model, one "
                    f"of {_wholebody_names(openpifpaf)}"
                )
            self.checkpoint_path = path.resolve()
        self._sha256: str | None = None
        self._model: torch.nn.Module | None = None
        self._decoder: Any = None
        self._order: np.ndarray | None = None  # (K,) our keypoint index of each of the network's keypoints

    def describe(self) -> dict[str, Any]:
        """Settings that determine the detections (device and batch size do not)."""
        openpifpaf = _import_openpifpaf()
        torchvision = importlib.import_module("torchvision")
        out: dict[str, Any] = {"detector": self.name, "checkpoint": self.checkpoint}
        if self.checkpoint_url is not None:
            out["checkpoint_url"] = self.checkpoint_url
        else:
            out["checkpoint_sha256"] = self._file_sha256()
        out.update({
            "long_edge": self.long_edge,
            "max_people": self.max_people,
            "instance_threshold": self.instance_threshold,
            "openpifpaf_version": openpifpaf.__version__,
            "torch_version": torch.__version__,
            "torchvision_version": torchvision.__version__,
        })  # fmt: skip
        return out

    def load(self) -> OpenPifPafDetector:
        """Load the network (done by the first call otherwise); returns the detector."""
        if self._model is not None:
            return self
        openpifpaf = _import_openpifpaf()
        path = self._local_checkpoint()
        model = load_checkpoint_model(path, self.extra_safe_globals)
        cif, caf = _cif_caf_metas(model, path)
        self._order = keypoint_order(cif.keypoints, what=f"checkpoint {str(path)!r}")
        self._decoder = openpifpaf.decoder.CifCaf([cif], [caf])
        self._model = model.to(self.device)
        LOG.info("OpenPifPaf %s loaded from %s on %s", self.checkpoint, path, self.device)
        return self

    def __call__(self, batch: FrameBatch) -> np.ndarray:
        """Detect the people in a batch of frames.

        Args:
            batch: frames of one view; ``batch.images`` (B, H, W, 3) uint8 RGB is required.

        Returns:
            (B, P, J, 3) float32 [x, y, score] in pixels of the original image, P = ``max_people`` candidates per
            image ordered by OpenPifPaf's instance score, best first. Absent candidates, keypoints not found and
            keypoints decoded outside the image are NaN in all three.
        """
        images = batch.images
        if images is None:
            raise ValueError(
                "the OpenPifPaf detector needs pixels (batch.images), but this source gives none (the synthetic "
                "capture has no video); use detector=simulated for it"
            )
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"expected batch.images (B, H, W, 3) uint8 RGB, got shape {images.shape} {images.dtype}")
        self.load()
        out = np.full((images.shape[0], self.max_people, skeleton.NUM_KEYPOINTS, 3), np.nan, dtype=np.float32)
        with _decoding(self.instance_threshold):
            for start in range(0, images.shape[0], self.batch_size):
                chunk = images[start:start + self.batch_size]
                out[start:start + len(chunk)] = self._detect(chunk)
        return out

    def _detect(self, images: np.ndarray) -> np.ndarray:
        """(b, H, W, 3) uint8 -> (b, P, J, 3) float32, NaN where missing."""
        b, H, W = images.shape[:3]
        images = np.require(images, requirements=["C", "W"])  # torch.from_numpy needs a writable, positive-stride array
        with torch.inference_mode():
            x = torch.from_numpy(images).to(self.device).permute(0, 3, 1, 2).float().div_(255.0)  # (b, 3, H, W)
            x, scale, offset = preprocess(x, self.long_edge)  # (b, 3, H', W')
            heads = [h.cpu() for h in self._model(x)]  # per head (b, fields, components, h', w') on the CPU
        out = np.full((b, self.max_people, skeleton.NUM_KEYPOINTS, 3), np.nan, dtype=np.float32)
        for i in range(b):
            anns = self._decoder([h[i] for h in heads])
            anns = sorted(anns, key=lambda a: -float(a.score))[: self.max_people]  # stable: ties keep decoder order
            if not anns:
                continue
            data = np.stack([a.data for a in anns]).astype(np.float64)  # (p, K, 3) network pixels, score 0: missing
            out[i, : len(anns)] = to_original_pixels(data, scale, offset, (H, W))[:, np.argsort(self._order)]
        return out

    def _local_checkpoint(self) -> Path:
        """The checkpoint file, downloaded into torch's hub cache (as OpenPifPaf does) for a registered name."""
        if self.checkpoint_path is not None:
            return self.checkpoint_path
        cached = Path(torch.hub.get_dir()) / "checkpoints" / PurePosixPath(urlparse(self.checkpoint_url).path).name
        if not cached.is_file():
            LOG.info("downloading OpenPifPaf checkpoint %s from %s to %s", self.checkpoint, self.checkpoint_url, cached)
            cached.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(self.checkpoint_url, str(cached), progress=True)  # writes atomically
        return cached

    def _file_sha256(self) -> str:
        if self._sha256 is None:
            h = hashlib.sha256()
            with open(self.checkpoint_path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            self._sha256 = h.hexdigest()
        return self._sha256


def resolve_device(device: str) -> torch.device:
    """``auto`` -> ``cuda`` when a GPU is available, else ``cpu``; any other torch device string as given."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise ValueError(f"detector.device: expected auto, cpu, cuda or cuda:N, got {device!r}") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"detector.device={device!r} but CUDA is not available here; use device=auto or cpu")
    return dev


def preprocess(images: torch.Tensor, long_edge: int) -> tuple[torch.Tensor, tuple[float, float], tuple[int, int]]:
    """Resize, normalise and centre-pad images for the network, as OpenPifPaf's predictor does.

    Resizing is bilinear with antialiasing (half-pixel centres); padding adds pixels of OpenPifPaf's fill colour
    around the image up to a multiple of 16 plus one in each direction.

    Args:
        images: (B, 3, H, W) float RGB in [0, 1], on any device.
        long_edge: resize so the longer side has this many pixels; 0 keeps the native size.

    Returns:
        (B, 3, H', W') normalised network input; (sx, sy), the resized over the original size per axis; and
        (left, top), the padding before the image, in network pixels.
    """
    B, _, H, W = images.shape
    if long_edge > 0 and long_edge != max(H, W):
        s = long_edge / max(H, W)
        h, w = max(1, round(H * s)), max(1, round(W * s))
        images = F.interpolate(images, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    h, w = images.shape[-2:]
    mean = images.new_tensor(_MEAN).view(1, 3, 1, 1)
    std = images.new_tensor(_STD).view(1, 3, 1, 1)
    fill = (images.new_tensor(_PAD_FILL).view(1, 3, 1, 1) / 255.0 - mean) / std
    Hp = -(-(h - 1) // _PAD_MULTIPLE) * _PAD_MULTIPLE + 1
    Wp = -(-(w - 1) // _PAD_MULTIPLE) * _PAD_MULTIPLE + 1
    top, left = (Hp - h) // 2, (Wp - w) // 2
    x = fill.expand(B, 3, Hp, Wp).clone()  # (B, 3, Hp, Wp)
    x[:, :, top:top + h, left:left + w] = (images - mean) / std
    return x, (w / W, h / H), (left, top)


def to_original_pixels(data: np.ndarray, scale: tuple[float, float], offset: tuple[int, int],
                       image_size: tuple[int, int]) -> np.ndarray:
    """Map decoded keypoints from network input pixels back to the original image.

    Args:
        data: (..., K, 3) [x, y, score] in padded, resized network pixels; score 0 where not found.
        scale: (sx, sy), resized over original size, from :func:`preprocess`.
        offset: (left, top) padding from :func:`preprocess`.
        image_size: (H, W) of the original image.

    Returns:
        (..., K, 3) float32 [x, y, score] in original pixels (pixel centres at integers), all NaN where not found or
        outside the image.
    """
    H, W = image_size
    out = np.empty(data.shape, dtype=np.float32)
    out[..., 0] = (data[..., 0] - offset[0] + 0.5) / scale[0] - 0.5  # inverse of a half-pixel-centre resize
    out[..., 1] = (data[..., 1] - offset[1] + 0.5) / scale[1] - 0.5
    out[..., 2] = data[..., 2]
    inside = (out[..., 0] >= -0.5) & (out[..., 0] <= W - 0.5) & (out[..., 1] >= -0.5) & (out[..., 1] <= H - 0.5)
    out[~(inside & (out[..., 2] > 0))] = np.nan
    return out


def keypoint_order(names: Sequence[str], what: str = "the network") -> np.ndarray:
    """Map OpenPifPaf's whole-body keypoint names onto ``build_h3wb.skeleton``.

    Body and feet keypoints share their names; face and hands are ``f_24``..``f_91``, ``lh_92``..``lh_112`` and
    ``rh_113``..``rh_133`` (1-based COCO-WholeBody indices), as in ``openpifpaf.plugins.wholebody.constants``.

    Args:
        names: (K,) the network's keypoint names, in its order.
        what: what the names come from, for error messages.

    Returns:
        (K,) int, the skeleton index of each of the network's keypoints: a permutation of ``range(J)``.
    """
    J = skeleton.NUM_KEYPOINTS
    if len(names) != J:
        raise ValueError(f"{what} is not a whole-body model: its CIF head has {len(names)} keypoints, expected the "
                         f"{J} COCO-WholeBody keypoints (e.g. OpenPifPaf's shufflenetv2k30-wholebody)")
    order = np.empty(J, dtype=np.int64)
    for k, name in enumerate(names):
        m = re.fullmatch(r"(f|lh|rh)_(\d+)", name)
        part = skeleton.PARTS[_NUMBERED_PARTS[m[1]]] if m else None
        if name in skeleton.NAMES:
            order[k] = skeleton.index(name)
        elif part is not None and part.start < int(m[2]) <= part.stop:  # 1-based index inside its part
            order[k] = int(m[2]) - 1
        else:
            raise ValueError(f"{what}: keypoint {k} is named {name!r}, which is not a COCO-WholeBody keypoint "
                             f"(expected OpenPifPaf's whole-body names, see openpifpaf.plugins.wholebody.constants)")
    if len(np.unique(order)) != J:
        raise ValueError(f"{what}: keypoint names map onto {len(np.unique(order))} distinct COCO-WholeBody "
                         f"keypoints, expected all {J}")
    return order


def safe_checkpoint_globals(path: Path, extra_safe_globals: Sequence[str] = ()) -> list[tuple[Any, str]]:
    """The globals a checkpoint needs beyond torch's defaults, each checked before anything is unpickled.

    The pickle is disassembled, not run (``torch.serialization.get_unsafe_globals_in_checkpoint``). A global is
    allowed when it is

    - named in ``extra_safe_globals`` (``"module.qualname"``: the user trusts it);
    - a numpy array, dtype or scalar constructor (``_NUMPY_GLOBALS``, and numpy's dtype classes);
    - a class (not a function) from ``openpifpaf``, a ``torch.nn.Module`` subclass from ``torch`` or
      ``torchvision``, or any class defined under ``torch.nn``: instantiating these and setting their state runs
      no file, network or process code. Functions are refused, even from torch (``torch.hub.load``,
      ``torch.load`` or ``torch.utils.cpp_extension.load_inline`` would run code), unless listed as extra.

    Args:
        path: a checkpoint written by ``torch.save`` (zip format, PyTorch >= 1.6).
        extra_safe_globals: more globals to allow, as ``"module.qualname"`` strings.

    Returns:
        (object, name) pairs for ``torch.serialization.safe_globals``.
    """
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"checkpoint {str(path)!r} is not in PyTorch's zip format (saved by PyTorch < 1.6, or not a "
            "torch.save file), which cannot be inspected or loaded safely; if you trust it, convert it once with "
            "torch.save(torch.load(old, weights_only=False), new)"
        )
    try:
        names = sorted(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except (ValueError, pickle.UnpicklingError) as e:
        raise ValueError(f"cannot read the pickled globals of checkpoint {str(path)!r}: {e}") from e
    extra = set(extra_safe_globals)
    for name in extra:
        _resolve_global(name, f"detector.extra_safe_globals entry {name!r}")
    allowed: list[tuple[Any, str]] = []
    refused: list[str] = []
    for name in names:
        obj = None
        if name in extra or name in _NUMPY_GLOBALS:
            obj = _resolve_global(name, f"global {name!r} of checkpoint {str(path)!r}")
        elif name.split(".")[0] in ("openpifpaf", "torch", "torchvision"):
            obj = _resolve_global(name, f"global {name!r} of checkpoint {str(path)!r}", missing_ok=True)
            if not _is_safe_class(obj):
                obj = None
        if obj is None:
            refused.append(name)
        else:
            allowed.append((obj, name))
    if refused:
        raise ValueError(
            f"checkpoint {str(path)!r} pickles globals that are not known to be safe to load: {refused}. Loading "
            "it could run arbitrary code. If you trust this file, allow them by listing them (\"module.qualname\") "
            "in detector.extra_safe_globals, e.g. with the override "
            f"'detector.extra_safe_globals=[{','.join(refused)}]'"
        )
    if "numpy.dtype" in {name for _, name in allowed}:
        allowed += _numpy_dtype_classes()  # a pickled dtype is rebuilt as an instance of its dtype class
    return allowed


def load_checkpoint_model(path: Path, extra_safe_globals: Sequence[str] = ()) -> torch.nn.Module:
    """Load an OpenPifPaf checkpoint's network with ``weights_only=True`` and only checked globals allowed.

    Args:
        path: checkpoint file: a dict with the whole pickled network under ``"model"``, as OpenPifPaf saves.
        extra_safe_globals: more globals to allow (see :func:`safe_checkpoint_globals`).

    Returns:
        The network on the CPU in eval mode, migrated to the installed OpenPifPaf as its own factory does.
    """
    openpifpaf = _import_openpifpaf()
    allowed = safe_checkpoint_globals(path, extra_safe_globals)
    try:
        with torch.serialization.safe_globals(allowed):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(f"checkpoint {str(path)!r} could not be loaded safely: {e}") from e
    model = checkpoint.get("model") if isinstance(checkpoint, dict) else None
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"checkpoint {str(path)!r} is not an OpenPifPaf checkpoint: expected a dict with the network "
                         f"under 'model', got {type(checkpoint).__name__}"
                         + (f" with keys {sorted(checkpoint)}" if isinstance(checkpoint, dict) else ""))
    openpifpaf.network.model_migration.model_migration(model)  # what openpifpaf.network.Factory does after loading
    return model.eval()


def _cif_caf_metas(model: torch.nn.Module, path: Path) -> tuple[Any, Any]:
    """The network's first CIF head followed by a CAF head (what OpenPifPaf's CifCaf decoder uses)."""
    from openpifpaf import headmeta

    metas = list(getattr(model, "head_metas", None) or [])
    for cif, caf in zip(metas[:-1], metas[1:]):
        if isinstance(cif, headmeta.Cif) and isinstance(caf, headmeta.Caf):
            return cif, caf
    raise ValueError(f"checkpoint {str(path)!r} is not a whole-body keypoint model: it has no CIF head followed by a "
                     f"CAF head (heads: {[type(m).__name__ + ':' + str(getattr(m, 'name', '?')) for m in metas]})")


@contextlib.contextmanager
def _decoding(instance_threshold: float) -> Iterator[None]:
    """Decoder settings for the duration of a call, restored afterwards.

    OpenPifPaf's instance threshold is a process-wide value in its C++ extension: it is set here and put back.
    OpenPifPaf's decoder also logs every image at INFO level; unless the user set a level for the
    ``openpifpaf.decoder`` logger, it is raised to WARNING meanwhile, so that a dataset build does not log a line per
    frame.
    """
    from openpifpaf.decoder.utils import nms

    previous = nms.Keypoints.get_instance_threshold()
    log = logging.getLogger("openpifpaf.decoder")
    quiet = log.level == logging.NOTSET
    nms.Keypoints.set_instance_threshold(instance_threshold)
    if quiet:
        log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        nms.Keypoints.set_instance_threshold(previous)
        if quiet:
            log.setLevel(logging.NOTSET)


def _is_safe_class(obj: Any) -> bool:
    if not isinstance(obj, type):
        return False
    module = getattr(obj, "__module__", "") or ""
    root = module.split(".")[0]
    if root == "openpifpaf":
        return True
    if root in ("torch", "torchvision") and issubclass(obj, torch.nn.Module):
        return True
    return module == "torch.nn" or module.startswith("torch.nn.")


def _resolve_global(name: str, what: str, missing_ok: bool = False) -> Any:
    """Import ``"package.module.qualname"`` (the longest importable module prefix, then attributes)."""
    parts = name.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            break
        return obj
    if missing_ok:
        return None
    raise ValueError(f"{what}: cannot import {name!r} (expected \"module.qualname\" of an installed class/function)")


def _numpy_dtype_classes() -> list[Any]:
    dtypes = importlib.import_module("numpy.dtypes")
    return [getattr(dtypes, n) for n in getattr(dtypes, "__all__", []) if isinstance(getattr(dtypes, n), type)]


def _wholebody_names(openpifpaf: Any) -> list[str]:
    return sorted(n for n, url in openpifpaf.CHECKPOINT_URLS.items()
                  if n.endswith("-wholebody") and url is not openpifpaf.PRETRAINED_UNAVAILABLE)


def _import_openpifpaf() -> Any:
    try:
        return importlib.import_module("openpifpaf")
    except ImportError as e:
        raise ImportError("the OpenPifPaf detector needs openpifpaf, which is compiled from source: run "
                          "scripts/install_openpifpaf.sh") from e
