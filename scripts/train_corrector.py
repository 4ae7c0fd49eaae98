"""Train an optional 2D part corrector (hand or face) from COCO-WholeBody-style annotations.

Usage:
    python scripts/train_corrector.py --annotations coco_wholebody_train_v1.0.json --images train2017/ \\
        --part left_hand --out corrector_left_hand.pt --epochs 30 --device auto
    python scripts/train_corrector.py ... --crop-size 64 --backbone tiny            # small and fast

Reads the official COCO-WholeBody layout (``lefthand_kpts``, ``righthand_kpts``, ``face_kpts`` with their
``*_valid`` flags) or 133-keypoint ``keypoints``. Writes a checkpoint that loads with
``build_h3wb.refine.corrector.load_corrector`` (``torch.load(weights_only=True)``) and prints the held-out error before
and after correction. Exits with status 2 and a message naming the file and key when the input is invalid.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from build_h3wb.completion.train import resolve_device
from build_h3wb.refine.corrector import BACKBONES, CORRECTABLE_PARTS, CorrectorConfig, save_corrector
from build_h3wb.refine.corrector_train import CorrectorTrainConfig, load_part_annotations, train_corrector


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--annotations", type=Path, required=True, help="COCO-WholeBody-style JSON file")
    parser.add_argument("--images", type=Path, required=True, help="folder the images' file_name are relative to")
    parser.add_argument("--part", choices=CORRECTABLE_PARTS, required=True)
    parser.add_argument("--out", type=Path, required=True, help="checkpoint to write (.pt)")
    parser.add_argument("--epochs", type=int, default=CorrectorTrainConfig.epochs)
    parser.add_argument("--batch-size", type=int, default=CorrectorTrainConfig.batch_size)
    parser.add_argument("--lr", type=float, default=CorrectorTrainConfig.lr)
    parser.add_argument("--crop-size", type=int, default=CorrectorConfig.crop_size)
    parser.add_argument("--backbone", choices=BACKBONES, default=CorrectorConfig.backbone)
    parser.add_argument("--backbone-weights", type=Path, default=None,
                        help="local torchvision resnet18 state-dict file to initialise the backbone (optional)")
    parser.add_argument("--iterations", type=int, default=CorrectorConfig.iterations,
                        help="network passes when the corrector is applied")
    parser.add_argument("--val-fraction", type=float, default=CorrectorTrainConfig.val_fraction)
    parser.add_argument("--workers", type=int, default=CorrectorTrainConfig.num_workers, help="DataLoader workers")
    parser.add_argument("--seed", type=int, default=CorrectorTrainConfig.seed)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    try:
        model_cfg = CorrectorConfig(part=args.part, crop_size=args.crop_size, backbone=args.backbone,
                                    iterations=args.iterations)
        train_cfg = CorrectorTrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                         val_fraction=args.val_fraction, num_workers=args.workers, seed=args.seed)
        device = resolve_device(args.device)
        data = load_part_annotations(args.annotations, args.images, args.part, train_cfg.min_annotated)
        model, summary = train_corrector(model_cfg, train_cfg, data, device=device,
                                         backbone_weights=args.backbone_weights, progress=True)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    save_corrector(args.out, model, summary)
    print(f"trained the {args.part} corrector on {summary['train_instances']} instances in "
          f"{summary['train_seconds']:.1f} s")
    if "val" in summary:
        val = summary["val"]
        print(f"held-out ({summary['val_instances']} instances): median error {val['median_px_before']:.2f} px "
              f"before, {val['median_px_after']:.2f} px after correction")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
