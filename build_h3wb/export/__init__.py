"""Export formats for the finished dataset: one HDF5 file, the official H3WB JSON files, two VideoPose3D-style npz.

Modules: :mod:`~build_h3wb.export.sequences` (the poses to export, :class:`ExportSequence`, and the quality order),
:mod:`~build_h3wb.export.views` (projections and boxes, computed once per sequence and shared by all writers),
:mod:`~build_h3wb.export.hdf5`, :mod:`~build_h3wb.export.h3wb_json`, :mod:`~build_h3wb.export.npz`,
:mod:`~build_h3wb.export.images`. Every writer takes a list of :class:`ExportSequence` (the selected, complete poses
of one recording with its rig), optionally the shared ``views`` of :func:`sequence_views`, and writes atomically
(temporary file + ``os.replace``): an interrupted export leaves no partial file. ``C`` below is the number of cameras
of the rigs (4 for Human3.6M; all sequences must share it), ``J`` is ``skeleton.NUM_KEYPOINTS`` (COCO-WholeBody
order) and ``N`` the number of exported poses.

Projections and bounding boxes: :mod:`build_h3wb.export.views` (computed once per sequence for every writer, or,
with :class:`LazyViews` as the stage passes them, when each writer asks: the memory of an export then does not grow
with the number of poses; only the per-pose labels and quality order do, a few dozen bytes a pose).

Order of poses. The H3WB JSON files are ordered by quality (lower = better; ties keep input order) within each
split: the pose of rank ``k`` gets the sample ids ``C k .. C k + C - 1``, one per camera in rig order. The HDF5 file
and the npz files keep recordings in input order and frames in ascending frame order (for temporal models); the HDF5
dataset ``h3wb_pose_index`` links each row to its rank ``k`` in its split's JSON files.

HDF5 schema (:func:`write_hdf5`; float keypoints stored plain, integers and labels gzip-compressed; strings are
UTF-8 ``h5py.string_dtype``)::

    keypoints_3d            (N, J, 3)    float64  world millimetres
    keypoints_2d            (N, C, J, 2) float64  pixels, pinhole K (R X + t) / z, no distortion (as H3WB)
    keypoints_2d_distorted  (N, C, J, 2) float64  pixels, with the camera's lens distortion (video frame)
    keypoints_3d_camera     (N, C, J, 3) float64  camera frame R X + t, millimetres
    bbox                    (N, C, 4)    int32    x_min, y_min, x_max, y_max pixels (export.views)
    provenance              (N, J)       uint8    Provenance codes: 0 triangulated, 1 completed, 2 refined
    quality                 (N,)         float64  lower = better
    subject, action, sequence, split  (N,) str    split: "train", "test" or "unassigned" (subject not in split)
    frame                   (N,)         int64    video frame, counted from 0 as OpenCV reads it
    h3wb_pose_index         (N,)         int64    rank k in the split's H3WB JSON files (ids C k + c), -1 unassigned
    keypoint_names          (J,)         str
    cameras/<subject>/names (C,) str, K (C, 3, 3), dist (C, 5) [k1, k2, p1, p2, k3], R (C, 3, 3) world-to-camera,
                      t (C, 3) mm, image_size (C, 2) int32 (W, H); attribute distortion_model
    attributes: format, units, num_keypoints, num_cameras, bbox_margin, provenance_codes (JSON)

The camera axis ``C`` of a row follows ``cameras/<subject>/names`` of the row's subject. Reading it (a README can
copy this; the test suite runs it)::

    import h5py

    with h5py.File("h3wb_export.h5", "r") as f:
        kp3d = f["keypoints_3d"][:]            # (N, J, 3) world mm
        kp2d = f["keypoints_2d"][:]            # (N, C, J, 2) pinhole pixels
        subject = f["subject"].asstr()[:]      # (N,) e.g. "S1"
        frame = f["frame"][:]                  # (N,) video frame from 0
        cams = f["cameras"][subject[0]]
        K, R, t = cams["K"][:], cams["R"][:], cams["t"][:]  # (C, 3, 3), (C, 3, 3), (C, 3) mm
        names = cams["names"].asstr()[:]       # (C,) camera ids: the order of the C axis
        print(kp3d.shape, kp2d.shape, subject[0], frame[0], list(names))

H3WB JSON files (:func:`write_h3wb_json`), the official layout that ``test_leaderboard.py`` of
wholebody3d/wholebody3d reads: ``{"<id>": {"image_path", "bbox": {"x_min", "y_min", "x_max", "y_max"},
"keypoints_2d": {"0".."J-1": {"x", "y"}}, "keypoints_3d": {"0".."J-1": {"x", "y", "z"}}}}`` with ids ``"0", "1",
...``, 2D = pinhole pixels, 3D = ``R X`` mm, image path ``<subject>/Images/<sequence>.<camera>/frame_<frame, 4
digits>.jpg``. Each file holds at least every field the official ``data_loader`` reads from it:

- ``2Dto3D_train.json``: train split, every sample with all four fields (``type='train'`` reads the keypoints,
  and with ``cross_validation=N`` fold N of 5); ``RGBto3D_train.json``: the same content (the RGB loader reads
  image_path, bbox and 3D), a hard link to the first file where the file system allows;
- ``2Dto3D_test_2d.json`` / ``2Dto3D_test_3d.json``: test ranks k = 0, 2, 4, ... (ids 0-3, 8-11, ... for C = 4),
  the input keypoints_2d / the ground truth keypoints_2d and keypoints_3d (``type='admin'`` reads both);
- ``I2Dto3D_test_2d.json`` / ``I2Dto3D_test_3d.json``: test ranks k = 1, 3, 5, ... (ids 4-7, 12-15, ...); the
  input is the *masked* 2D (the H3WB rule, :mod:`build_h3wb.leaderboard.masking`): every keypoint of
  ``keypoints_2d`` carries ``"confidence"``, 1 where it is given and 0 where it is masked, a masked keypoint having
  ``x = y = 0`` (as the H3WB maintainers describe their leaderboard input, wholebody3d issue #29); the ground
  truth holds the complete keypoints_2d and keypoints_3d; the boolean masks are also in ``I2Dto3D_test_masks.npz``
  (row r = the r-th I2D sample in ascending id order);
- ``RGBto3D_test_img.json`` / ``RGBto3D_test_3d.json``: every test sample, image_path and bbox / image_path, bbox
  and keypoints_3d, ids ``0 .. C K - 1`` (the global test ids unless ``rgb_test_seed`` permutes them, as the
  official release does).

Official VideoPose3D-style npz (:func:`write_official_npz`, ``h3wb_videopose3d.npz``), the layout the official
``Human3WBDataset`` (``utils/prepare_data_h3wb.py``) loads with ``allow_pickle=True``; two pickled dicts (read
only files you trust)::

    train_data[subject][sequence]["global_3d"]             (T, J, 3) float32 world metres
    train_data[subject][sequence]["frame_id"]              (T,) int64 video frame from 0
    train_data[subject][sequence][camera]["camera_3d"]     (T, J, 3) float32 camera frame R X + T, metres
    train_data[subject][sequence][camera]["pose_2d"]       (T, J, 2) float32 pinhole pixels
    train_data[subject][sequence][camera]["sample_id"]     (T,) int64 id in 2Dto3D_train.json
    metadata["left_side"], ["right_side"]; ["body"], ["left_foot"], ["right_foot"], ["face"], ["left_hand"],
        ["right_hand"] (0-based keypoint indices); ["keypoint_names"], ["units"], ["format"],
        ["camera_order"][subject]; metadata[subject][camera]: id, res_w, res_h, K_over_1000 (K / 1000),
        R (world-to-camera), T (metres, X_cam = R X + T), center (camera position, world metres),
        distortion [k1, k2, p1, p2, k3], distortion_model

Only the train split's subjects are in ``train_data`` (as in the official release). The flat npz
(:func:`write_flat_npz`, ``h3wb_flat.npz``; ``np.savez``, no pickled objects) holds every subject::

    positions_3d/<subject>/<sequence>/global_3d                  (N, J, 3) float64 world mm
    positions_3d/<subject>/<sequence>/frame_id                   (N,) int64 video frame from 0
    positions_3d/<subject>/<sequence>/camera_3d/<camera>         (N, J, 3) float64 camera frame R X + t, mm
    positions_3d/<subject>/<sequence>/pose_2d/<camera>           (N, J, 2) float64 pinhole pixels
    positions_3d/<subject>/<sequence>/pose_2d_distorted/<camera> (N, J, 2) float64 pixels with lens distortion
    metadata                                                     (1,) str: JSON (format, keypoint names, flip
        index, parts, per-sequence action and frame count, per subject the camera order and per camera the
        fields of the official metadata above)
"""

from build_h3wb.export.h3wb_json import (
    CONFIDENCE_KEY,
    H3WB_FILES,
    I2D_MASKS_FILE,
    link_or_copy,
    load_h3wb_json,
    write_h3wb_json,
)
from build_h3wb.export.hdf5 import HDF5_FORMAT, read_hdf5, write_hdf5
from build_h3wb.export.images import write_images
from build_h3wb.export.npz import FLAT_FORMAT, OFFICIAL_FORMAT, load_flat_npz, write_flat_npz, write_official_npz
from build_h3wb.export.sequences import (
    SPLITS,
    UNASSIGNED,
    ExportSequence,
    Provenance,
    StoredPoses,
    check_sequences,
    quality_order,
)
from build_h3wb.export.views import (
    LazyViews,
    Views,
    image_relpath,
    keypoint_bbox,
    sequence_views,
    view_arrays,
    views_of,
)

__all__ = [
    "CONFIDENCE_KEY", "FLAT_FORMAT", "H3WB_FILES", "HDF5_FORMAT", "I2D_MASKS_FILE", "OFFICIAL_FORMAT", "SPLITS",
    "UNASSIGNED", "ExportSequence", "LazyViews", "Provenance", "StoredPoses", "Views", "check_sequences",
    "image_relpath", "keypoint_bbox",
    "link_or_copy", "load_flat_npz", "load_h3wb_json", "quality_order", "read_hdf5", "sequence_views",
    "view_arrays", "views_of", "write_flat_npz", "write_h3wb_json", "write_hdf5", "write_images",
    "write_official_npz",
]
