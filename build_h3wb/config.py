"""Typed Hydra configuration: one dataclass schema per config group, registered in Hydra's ConfigStore.

The dataclasses are the schema (types, and what each setting means); the values live in ``conf/``: every option
file of a group (``conf/data/synthetic.yaml``, ``conf/triangulate/default.yaml``, ...) holds all of its values, and
``conf/config.yaml`` picks the default option of every group. A field without a value here is ``MISSING``.

The YAML files under ``conf/`` extend these schemas (``defaults: [<name>_schema]``), so a misspelled key or a
value of the wrong type fails when the configuration is composed, before any work starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from build_h3wb.completion.config import CompletionConfig


@dataclass
class BuildConfig:
    """Where artifacts go.

    Attributes:
        dir: build directory (relative paths are taken from the directory the command was started in).
        overwrite: replace artifacts made with a different configuration instead of stopping with an error.
        poses: the pose stage whose output ``filter`` assesses and ``export`` writes: ``refine`` (the full
            pipeline), ``complete`` or ``triangulate`` (see ``build_h3wb.build``).
    """

    dir: str = MISSING
    overwrite: bool = MISSING
    poses: str = MISSING


@dataclass
class SyntheticDataConfig:
    """The synthetic Human3.6M-like capture (see ``build_h3wb.sources.synthetic``)."""

    _target_: str = MISSING
    subjects: list[str] = MISSING
    actions: list[str] = MISSING  # fmt: skip
    repeats: int = MISSING  # sub-actions per action ("Walking 1", "Walking 2", ...)
    duration_s: float = MISSING  # length of every sequence
    video_fps: float = MISSING  # frame rate of the simulated video (Human3.6M: 50)
    stride: int = MISSING  # keep every stride-th video frame (H3WB: 5, a 10 fps grid)
    seed: int = MISSING
    rig: str = MISSING  # a calibration file (any format data=rig reads) to use instead of Human3.6M's cameras


@dataclass
class H36MDataConfig:
    """Human3.6M on disk (see ``build_h3wb.sources.h36m``): videos, optional mocap, the shipped calibration."""

    _target_: str = MISSING
    root: str = MISSING  # the folder holding S1, S5, ... (each with Videos/ and MyPoseFeatures/)
    subjects: list[str] = MISSING
    actions: list[str] = MISSING  # fmt: skip
    cameras: list[str] = MISSING  # empty: all four
    stride: int = MISSING  # H3WB: every frame number is a multiple of 5 (10 fps on the 50 fps videos)
    start: int = MISSING  # first frame, counted from 0 as OpenCV reads them
    stop: int = MISSING  # 0: to the end of each video
    mocap: bool = MISSING  # evaluate against D3_Positions/<Sequence>.cdf where present
    exclude: list[str] = MISSING  # sequences to leave out, "S11/Directions"


@dataclass
class RigDataConfig:
    """Any calibrated rig (see ``build_h3wb.sources.rig``): synchronised videos or image folders + a calibration."""

    _target_: str = MISSING
    root: str = MISSING  # <root>/<sequence>/<camera>.mp4 (or <camera>/ image folders)
    calibration: str = MISSING  # rig .json, anipose/Pose2Sim .toml, or an EasyMocap intri.yml/extri.yml folder
    calibration_format: str = MISSING  # auto | rig | anipose | easymocap | qualisys
    units: str = MISSING  # translations' unit (mm | cm | m); empty: the format's default
    subject: str = MISSING
    sequences: list[str] = MISSING  # empty: every sequence folder
    cameras: list[str] = MISSING  # empty: all in the calibration
    stride: int = MISSING
    start: int = MISSING
    stop: int = MISSING


@dataclass
class DetectionsDataConfig:
    """A rig known by its detection files and calibration, no videos (see ``build_h3wb.sources.detections``).

    ``root``, ``pattern`` and ``first_frame`` follow ``detector=files`` (conf/data/detections.yaml).
    """

    _target_: str = MISSING
    root: str = MISSING  # the detections folder (default: ${detector.root})
    calibration: str = MISSING  # rig .json, anipose/Pose2Sim .toml, or an EasyMocap intri.yml/extri.yml folder
    pattern: str = MISSING
    first_frame: int = MISSING
    fps: float = MISSING  # the recording's frame rate (0: unknown, triangulate's time-based checks stay off)
    calibration_format: str = MISSING
    units: str = MISSING
    subject: str = MISSING
    sequences: list[str] = MISSING
    cameras: list[str] = MISSING
    stride: int = MISSING
    start: int = MISSING
    stop: int = MISSING


@dataclass
class SimulatedDetectorConfig:
    """The simulated whole-body detector (see ``build_h3wb.detectors.simulated``); pixels at Human3.6M's 1000 px.

    The defaults are tuned so the default capture triangulates like H3WB's build on Human3.6M with OpenPifPaf: of
    the poses whose every keypoint was seen in at least one view, about 30% are complete after triangulation, and
    hands and face are what is missing most (see README). Per-part settings are dictionaries over the parts
    ``body, feet, face, left_hand, right_hand``.
    """

    _target_: str = MISSING
    seed: int = MISSING
    noise_px: dict[str, float] = MISSING  # median pixel noise (per axis) of a clearly seen keypoint
    noise_spread_part: float = MISSING  # log-normal spread of the noise level shared by a part in one view and frame
    noise_spread: float = MISSING  # log-normal spread of the noise level of single keypoints
    score_scale_px: float = MISSING  # score = base_score * exp(-noise level / score_scale_px) + N(0, 0.03)
    base_score: float = MISSING
    miss_prob: dict[str, float] = MISSING  # single keypoints not found in one view
    part_miss_prob: dict[str, float] = MISSING  # the whole part not found in one view
    # an occluded keypoint is still reported (a guess) with this probability, else missing
    occluded_report_prob: dict[str, float] = MISSING
    occluded_score_factor: float = MISSING  # a guess scores this fraction of what the keypoint would score if seen
    occluded_noise_factor: float = MISSING  # guesses are this much noisier (plus 3 px)
    face_min_cos: float = MISSING  # a head landmark is lost once its outward normal turns this far from the camera
    face_part_min_cos: float = MISSING  # the face is found at all while it faces the camera at least this much
    torso_radius_mm: float = MISSING  # capsules around torso, head and limbs hide what is behind them
    limb_radius_mm: float = MISSING
    head_radius_mm: float = MISSING
    outlier_prob: dict[str, float] = MISSING  # single keypoints grossly off (50-300 px) with a confident score
    # a whole part found at the wrong place in one view (shifted 50-300 px), still confident
    part_outlier_prob: dict[str, float] = MISSING
    swap_prob: float = MISSING  # left/right swap of the whole body in one view
    hand_swap_prob: float = MISSING  # left/right swap of the two hands in one view
    edge_margin_px: float = MISSING  # keypoints this close to the image border are lost (out of frame)
    # in unusual poses (raised/crossed arm, lunge) a limb is found wrong in several views
    limb_fault_prob: float = MISSING
    limb_fault_view_prob: float = MISSING  # ...in each view with this probability...
    limb_fault_px: list[float] = MISSING  # ...this far off at its end
    pixel_scale: float = MISSING  # multiplies every pixel quantity above (a person larger in the image than in H36M)


@dataclass
class OpenPifPafDetectorConfig:
    """OpenPifPaf's whole-body model (see ``build_h3wb.detectors.openpifpaf``), the detector H3WB was built with.

    ``checkpoint`` is an OpenPifPaf checkpoint name (``shufflenetv2k30-wholebody``, the more accurate, or
    ``shufflenetv2k16-wholebody``, the faster; fetched by OpenPifPaf on a machine with internet) or a local file.
    """

    _target_: str = MISSING
    checkpoint: str = MISSING
    device: str = MISSING  # auto | cpu | cuda | cuda:N
    batch_size: int = MISSING  # images per network call (the stage's detect.batch_size frames are split into these)
    long_edge: int = MISSING  # resize so the longer image side is this many pixels (0: native resolution)
    max_people: int = MISSING  # candidates kept per image (best first); the stage picks the subject among them
    instance_threshold: float = MISSING  # OpenPifPaf decoder: drop people scoring below this
    extra_safe_globals: list[str] = MISSING  # more classes a trusted checkpoint may unpickle


@dataclass
class MediaPipeDetectorConfig:
    """MediaPipe Holistic (see ``build_h3wb.detectors.mediapipe``): offline, models inside the package."""

    _target_: str = MISSING
    model_complexity: int = MISSING  # 0 lite, 1 full, 2 heavy; only 1 ships in the wheel, 0 and 2 download on first use
    min_detection_confidence: float = MISSING
    refine_face_landmarks: bool = MISSING
    static_image_mode: bool = MISSING  # strided frames are far apart: detect each frame on its own
    max_people: int = MISSING  # > 1: paint over each person found and detect again (candidates for the subject choice)


@dataclass
class FilesDetectorConfig:
    """Detections another tool wrote (see ``build_h3wb.detectors.files``): OpenPose, MMPose/RTMW, AlphaPose, ...

    ``<root>/<pattern>`` is each view's folder of per-frame files (or, with ``.json`` appended, one file per video).
    """

    _target_: str = MISSING
    root: str = MISSING  # the folder holding the detections
    layout: str = MISSING  # auto | openpose_body25 | openpose_coco18 | coco17 | halpe26 | halpe136 | coco_wholebody
    pattern: str = MISSING  # per view, below root; {subject}, {sequence}, {camera}
    first_frame: int = MISSING  # the number the tool gave the first frame (OpenPose, MMPose inferencer: 0; from 1: 1)
    max_people: int = MISSING  # candidates kept per frame (best mean score first); the stage picks the subject


@dataclass
class SubjectChoiceConfig:
    """Keeping one subject among several detected people (see ``build_h3wb.detectors.subject.choose_subject``)."""

    min_score: float = MISSING
    epipolar_px: float = MISSING  # keypoints of one person in two views lie this close to each other's epipolar lines
    agreement_weight: float = MISSING
    track_weight: float = MISSING
    centre_weight: float = MISSING
    score_weight: float = MISSING
    margin: float = MISSING  # a choice is reported ambiguous when another costs less than this many points
    track_gate_mm: float = MISSING  # the subject's 3D body centre moves at most this far between selected frames


@dataclass
class DetectConfig:
    """Detection stage settings.

    The work unit is one video (one view of one sequence). ``subjects``, ``actions``, ``cameras`` and
    ``shard``/``num_shards`` restrict which videos this run detects, without changing the build: run them as
    Hydra multirun jobs (``-m detect.shard=0,1,2,3 detect.num_shards=4``), and the run that finishes the last video
    assembles the sequences and writes the manifest.
    """

    batch_size: int = MISSING  # frames decoded and given to the detector at once
    subjects: list[str] = MISSING  # only these subjects' videos (empty: all)
    actions: list[str] = MISSING  # only these actions (canonical names; empty: all)
    cameras: list[str] = MISSING  # only these cameras (empty: all)
    shard: int = MISSING  # this run detects the videos i with i % num_shards == shard (of the selection above)
    num_shards: int = MISSING
    workers: int = MISSING  # processes sharing this run's videos (0: automatic for light detectors; not hashed)
    subject: SubjectChoiceConfig = field(default_factory=SubjectChoiceConfig)


@dataclass
class TriangulateConfig:
    """Triangulation settings (see ``build_h3wb.geometry.triangulation.triangulate``)."""

    min_score: float = MISSING
    opposing_angle_deg: float = MISSING
    min_ray_angle_deg: float = MISSING  # robust: two rays must cross at the point at >= this and <= 180 - this
    robust: bool = MISSING
    outlier_threshold_px: float = MISSING  # agreement threshold when person_threshold is 0
    person_threshold: float = MISSING  # agreement threshold: this share of the person's box diagonal in each view...
    min_threshold_px: float = MISSING  # ...but at least this many pixels
    fix_swaps: bool = MISSING  # swap a view's left/right labels back (body, hands, face) where that makes it agree
    sequence_check: bool = MISSING  # re-solve or drop keypoints that break a bone length or jump
    bone_tolerance: float = MISSING  # a bone is off beyond this share of the subject's median length...
    bone_tolerance_mm: float = MISSING  # ...or this many mm, whichever is larger
    max_speed_mm_s: float = MISSING  # faster than this, away from both neighbouring frames, is a jump
    recover_relax: float = MISSING  # body keypoints left out are recovered within this x the threshold if bones agree
    # per camera, residuals are also measured with its detections shifted this many frames
    sync_max_shift: int = MISSING
    smooth_sigma_s: float = MISSING  # Gaussian over neighbouring frames, in seconds (no-op at 10 fps; 0: off)
    bone_strength: float = MISSING  # pull limb bones towards the subject's median lengths (soft constraint; 0: off)
    undistort_iterations: int = MISSING
    chunk_frames: int = MISSING  # frames triangulated at once (memory stays flat with sequence length)
    workers: int = MISSING  # processes sharing the sequences (0: automatic, see build_h3wb.parallel; not hashed)


@dataclass
class CompletionPriorConfig:
    """The completion prior that does not depend on the build: the network trained on synthetic ground truth.

    The poses come from the synthetic motion generator (complete by construction); the trained network is cached
    in ``cache_dir`` under a key of everything that determines it (the poses themselves, ``complete.model``, the
    training seed, the package version). The defaults are subjects and a seed that no default build uses.

    Attributes:
        subjects: synthetic subject names (the body proportions are drawn from the name and the seed).
        actions: actions of ``build_h3wb.synthetic.motion.ACTIONS``; empty: all of them.
        seed: motion and body seed (the default capture uses 0, the README's independent capture 1).
        duration_s: seconds per (subject, action).
        fps: poses per second.
        cache_dir: where trained priors are kept (``~`` is expanded).
    """

    subjects: list[str] = MISSING
    actions: list[str] = MISSING
    seed: int = MISSING
    duration_s: float = MISSING
    fps: float = MISSING
    cache_dir: str = MISSING


@dataclass
class CompleteConfig:
    """Completion stage settings; the network's own settings are ``complete.model`` (``CompletionConfig``).

    Attributes:
        model: architecture and training hyper-parameters.
        device: ``auto`` (GPU when there is one), ``cpu`` or a torch device such as ``cuda:1``.
        seed: training seed (masks, shuffling, initialisation).
        max_train_poses: at most this many complete poses train the network (drawn at random).
        val_share: share of them held out to report validation error per epoch.
        baseline_eval_poses: incomplete poses on which the network is compared with the two baselines against
            ground truth (0: skip; only where the source has ground truth).
        robust_fill_mm: per part, observed keypoints the network's linear pose model leaves more than this
            unexplained are not used as input when filling (they stay in the output as triangulated); an empty
            mapping trusts every observation.
        anchor_jump_mm: a hand with holes whose observed wrist lies more than this from the median of the same
            wrist in the neighbouring frames is taken as found at the wrong place: the network fills it from the
            body and that median wrist, not from its observed keypoints (which stay in the output as triangulated;
            ``build_h3wb.completion.temporal``; 0: off).
        anchor_window: neighbouring frame steps on each side for ``anchor_jump_mm``.
        init: ``scratch`` trains the network on the build's complete poses from scratch; ``prior`` starts from the
            prior (``checkpoint``, else the synthetic prior ``prior``) and fine-tunes it on them. Either way, a
            build with fewer than ``min_train_poses`` complete poses uses the prior as it is.
        checkpoint: a completion checkpoint file to use as the prior instead of the synthetic one ("": none); when
            given it is always the starting point (fine-tuned on the build's complete poses where there are enough).
        min_train_poses: fewest complete triangulated poses that train (or fine-tune) the network on the build.
        prior: the synthetic prior.
    """

    model: CompletionConfig = MISSING
    device: str = MISSING
    seed: int = MISSING
    max_train_poses: int = MISSING
    val_share: float = MISSING
    baseline_eval_poses: int = MISSING
    robust_fill_mm: dict[str, float] = MISSING
    anchor_jump_mm: float = MISSING
    anchor_window: int = MISSING
    init: str = MISSING
    checkpoint: str = MISSING
    min_train_poses: int = MISSING
    prior: CompletionPriorConfig = field(default_factory=CompletionPriorConfig)


@dataclass
class RefineConfig:
    """Hand and face refinement (see ``build_h3wb.refine.refinement.refine_sequence`` for the method).

    Attributes:
        best_poses: per subject, this many complete triangulated poses with the lowest reprojection error teach the
            part models.
        min_subject_poses: a subject with fewer good poses uses models pooled over all subjects.
        ranks: shape components per part (face, left_hand, right_hand); empty: the module's defaults.
        min_score: detections below this confidence are not used.
        prior_weight: weight of the model prior against the views' data (mm^2 per mm^2).
        temporal_window: frames on each side whose shape coefficients are averaged (consecutive frames only).
        noise_mm: expected keypoint noise; sets how strongly shape coefficients are held to the mean.
        trust_views: the prior fades for keypoints whose summed squared view scores exceed this...
        trust_power: ...this sharply, so well-seen keypoints stay where their views put them. On the default
            capture 1.0 takes hands from 32.4 to 18.5 mm and face from 16.4 to 9.5 mm while the reprojection error
            of well-seen keypoints would rise 2.3% (1.674 -> 1.712 px) if ``keep_views`` did not keep them as
            triangulated (with it: 1.674 px, hands 19.1 mm, face 10.2 mm).
        filled_weight: weight of a network-filled keypoint as an observation of the part.
        keep_views: keypoints the detectors saw well (triangulated from at least this many views, all scoring at
            least ``keep_score``) stay exactly as triangulated, so their reprojection error cannot rise (0: off).
        keep_score: see ``keep_views``.
        chunk_frames: frames refined at once, each chunk with ``temporal_window`` frames of context on either side,
            so memory does not grow with the recording; the output is the same for any value (not hashed).
        workers: processes sharing the sequences (0: one per usable CPU, see ``build_h3wb.parallel``; one with
            correctors); not part of the configuration hash.
        correctors: optional 2D part correctors (``scripts/train_corrector.py``), e.g.
            ``{left_hand: lh.pt, right_hand: rh.pt, face: face.pt}``: each view's hand/face detections are corrected
            on the video frames before the re-triangulation (needs a source with pixels). Empty: none (default).
    """

    best_poses: int = MISSING
    min_subject_poses: int = MISSING
    correctors: dict[str, str] = MISSING  # optional 2D corrector checkpoints: part -> file
    ranks: dict[str, int] = MISSING
    min_score: float = MISSING
    prior_weight: float = MISSING
    temporal_window: int = MISSING
    noise_mm: float = MISSING
    trust_views: float = MISSING
    trust_power: float = MISSING
    filled_weight: float = MISSING
    keep_views: int = MISSING
    keep_score: float = MISSING
    chunk_frames: int = MISSING  # frames refined at once (memory stays flat with sequence length; not hashed)
    workers: int = MISSING  # processes sharing the sequences (0: automatic, see build_h3wb.parallel; not hashed)


@dataclass
class FilterConfig:
    """Quality filter thresholds (see ``build_h3wb.quality``); a pose is kept when it passes all of them.

    Attributes:
        max_reprojection_share: mean reprojection error of the triangulated keypoints as a share of the person's
            size in the image (the diagonal of the body keypoints' box in the views used), so one value holds for
            any rig and distance.
        min_views: mean number of views supporting a triangulated keypoint.
        max_filled_share: share of keypoints filled by the completion network.
        max_bone_deviation: length-weighted relative deviation of the rigid bones from the subject's median lengths.
        max_asymmetry: length-weighted relative difference between the left bones and their right twins.
        max_jump_mm_s: largest keypoint speed to the previous consecutive frame.
        target_size: if > 0, keep at most this many poses, the best first, balanced over subject x action.
        true_error: score the kept poses against ground truth where the source has it.
        chunk_frames: frames measured at once, so memory does not grow with the recording; the output is the same
            for any value (not part of the configuration hash).
    """

    max_reprojection_share: float = MISSING
    min_views: float = MISSING
    max_filled_share: float = MISSING
    max_bone_deviation: float = MISSING
    max_asymmetry: float = MISSING
    max_jump_mm_s: float = MISSING
    target_size: int = MISSING
    true_error: bool = MISSING
    chunk_frames: int = MISSING  # frames measured at once (memory stays flat with sequence length; not hashed)


@dataclass
class ExportConfig:
    """Export settings: the benchmark split and the JSON details (see ``build_h3wb.export``)."""

    train_subjects: list[str] = MISSING
    test_subjects: list[str] = MISSING
    bbox_margin: float = MISSING
    rgb_test_seed: int = MISSING  # permutes the RGB-to-3D test ids, as the official release does
    i2d_mask_seed: int = MISSING  # the fixed I2D test masks (export/json/I2Dto3D_test_masks.npz)
    decimals: int = MISSING  # rounding of the JSON keypoints (-1: full precision)
    images: bool = MISSING  # cut the selected frames out of the videos: export/images/<H3WB image_path> (real sources)
    jpeg_quality: int = MISSING


@dataclass
class BenchmarkConfig:
    """Scoring a predictions file on the exported test split (``stage=benchmark``).

    Attributes:
        predictions: JSON in the official layout, ``{"<id>": [[x, y, z], ...]}``, or HDF5 (``ids``, ``keypoints_3d``).
        task: ``2Dto3D``, ``I2Dto3D`` or ``RGBto3D``.
        method: the row name in ``benchmark/scores.md``.
        cross_validation: 0 scores the test split; N in 1..5 scores fold N of the training file (the official
            ``cvN`` mode; ``build_h3wb.leaderboard.scoring.cv_fold``).
    """

    predictions: str = MISSING
    task: str = MISSING
    method: str = MISSING
    cross_validation: int = MISSING


@dataclass
class PicturesConfig:
    """What ``stage=pictures`` draws (see ``build_h3wb.stages.pictures``).

    Attributes:
        subject: the sequence's subject.
        sequence: the sequence (its file name, e.g. ``Walking 1``).
        frame: the frame of the per-frame figures (every view, and the 3D skeleton).
        views: draw the per-frame figures of ``frame``.
        sheet: draw a contact sheet of ``sheet_frames`` evenly spaced frames of the sequence in ``camera``.
        video: write an MP4 of the sequence's selected frames in ``camera`` with the same overlay.
        camera: camera of the sheet and the video (empty: the rig's first).
        sheet_frames: tiles of the contact sheet.
        sheet_columns: tiles per row.
        video_fps: frame rate of the MP4 (0: the build's, the video's rate divided by the frame stride).
        image: a photo to draw through ``detector`` and the I2D lifter; when set, only this figure is drawn. A
            detections file (``.json`` / ``.npy`` in any layout ``detector=files`` reads) instead of a photo is
            lifted as it is, drawn on a neutral background.
        detections: a detections file for ``image``, used instead of running ``detector`` (empty: run it).
        layout: the layout of that file (``auto`` or a name in ``build_h3wb.skeleton.layouts.LAYOUTS``).
        lifter: the lifter file (empty: ``<build.dir>/lifter/I2Dto3D/model.pt``, written by ``stage=lifter``).
        min_score: detections of ``image`` scoring below this are hidden from the lifter (part of its mask).
        crop_margin: the crop of ``image`` extends the detection's box by this share of its size on each side.
    """

    subject: str = MISSING
    sequence: str = MISSING
    frame: int = MISSING
    views: bool = MISSING
    sheet: bool = MISSING
    video: bool = MISSING
    camera: str = MISSING
    sheet_frames: int = MISSING
    sheet_columns: int = MISSING
    video_fps: float = MISSING
    image: str = MISSING
    detections: str = MISSING
    layout: str = MISSING
    lifter: str = MISSING
    min_score: float = MISSING
    crop_margin: float = MISSING


@dataclass
class LifterStageConfig:
    """The residual lifting baseline (``stage=lifter``; see ``build_h3wb.leaderboard.lifter``), trained on the export.

    Attributes:
        tasks: which lifters to train and score: ``2Dto3D`` and/or ``I2Dto3D``.
        epochs: training epochs per task.
        width: hidden width of the linear layers (ignored when ``large``).
        large: the large variant (width 2048).
        batch_size: samples per optimisation step.
        lr_decay: learning rate factor applied after every epoch.
        num_blocks: residual blocks of the network.
        dropout: dropout probability inside the blocks.
        lr: initial Adam learning rate.
        weight_decay: Adam weight decay.
        device: ``auto`` (GPU when there is one), ``cpu`` or a torch device such as ``cuda:1``.
        seed: training seed (initialisation, batch order, training masks).
        method: the row name in ``benchmark/scores.md`` (the task is a column).
        cross_validation: 0 trains on the training file and tests on the test split; N in 1..5 trains on the other
            four folds of the training file and tests on fold N; -1 runs all five folds and reports the mean and
            standard deviation of every metric (``lifter/cv_summary.{json,md}``).
    """

    tasks: list[str] = MISSING
    epochs: int = MISSING
    width: int = MISSING
    large: bool = MISSING
    batch_size: int = MISSING
    lr_decay: float = MISSING
    num_blocks: int = MISSING
    dropout: float = MISSING
    lr: float = MISSING
    weight_decay: float = MISSING
    device: str = MISSING
    seed: int = MISSING
    method: str = MISSING
    cross_validation: int = MISSING


@dataclass
class EvaluateConfig:
    """Evaluation settings.

    Attributes:
        stage: which stage's 3D output to score: ``all`` (every finished pose stage), ``latest`` or a stage name.
    """

    stage: str = MISSING


@dataclass
class Config:
    """The whole configuration. ``stage`` picks what runs: one stage name or ``all``."""

    stage: str = "all"
    build: BuildConfig = field(default_factory=BuildConfig)
    data: Any = MISSING
    detector: Any = MISSING
    detect: DetectConfig = field(default_factory=DetectConfig)
    triangulate: TriangulateConfig = field(default_factory=TriangulateConfig)
    complete: CompleteConfig = field(default_factory=CompleteConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)
    pictures: PicturesConfig = field(default_factory=PicturesConfig)
    lifter: LifterStageConfig = field(default_factory=LifterStageConfig)


def conf_dir() -> Path:
    """The folder holding ``config.yaml``: the checkout's top-level ``conf/``, else the wheel's ``build_h3wb/conf``."""
    checkout = Path(__file__).resolve().parent.parent / "conf"
    if (checkout / "config.yaml").is_file() and (checkout / "__init__.py").is_file():
        return checkout
    return Path(str(resources.files("build_h3wb.conf")))


def option_values(group: str, option: str, schema: type | None = None) -> dict[str, Any]:
    """The values of one option file (``conf/<group>/<option>.yaml``) as plain Python, checked against ``schema``.

    For code that builds a component outside a composed configuration (tests, benchmarks), e.g.
    ``SimulatedDetector(**option_values("detector", "simulated"))``. Interpolations are left as written.
    """
    path = conf_dir() / group / f"{option}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no option {option!r} in config group {group!r}")
    node = OmegaConf.load(path)
    node.pop("defaults", None)
    if schema is not None:
        node = OmegaConf.merge(OmegaConf.structured(schema), node)
    values = OmegaConf.to_container(node, resolve=False)
    values.pop("_target_", None)
    return values


def register_configs() -> None:
    """Register the schemas with Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    cs.store(group="data", name="synthetic_schema", node=SyntheticDataConfig)
    cs.store(group="data", name="h36m_schema", node=H36MDataConfig)
    cs.store(group="data", name="rig_schema", node=RigDataConfig)
    cs.store(group="data", name="detections_schema", node=DetectionsDataConfig)
    cs.store(group="detector", name="simulated_schema", node=SimulatedDetectorConfig)
    cs.store(group="detector", name="openpifpaf_schema", node=OpenPifPafDetectorConfig)
    cs.store(group="detector", name="mediapipe_schema", node=MediaPipeDetectorConfig)
    cs.store(group="detector", name="files_schema", node=FilesDetectorConfig)
