"""``python -m build_h3wb stage=NAME [overrides]``: run one stage (or ``stage=all``) of the build."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from build_h3wb.config import register_configs

register_configs()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    from build_h3wb.stages import run_stage

    run_stage(cfg)


if __name__ == "__main__":
    main()
