"""``build-h3wb stage=NAME [overrides]`` (or ``python -m build_h3wb``): run one stage, or ``stage=all``."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from build_h3wb.config import conf_dir, register_configs

register_configs()


def config_path() -> str:
    """Where Hydra finds ``config.yaml``: the checkout's ``conf/``, else the copy in the wheel (``pkg://``)."""
    folder = conf_dir()
    return str(folder) if folder.parent.name != "build_h3wb" else "pkg://build_h3wb.conf"


@hydra.main(version_base="1.3", config_path=config_path(), config_name="config")
def main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    from build_h3wb.stages import run_stage

    run_stage(cfg)


if __name__ == "__main__":
    main()
