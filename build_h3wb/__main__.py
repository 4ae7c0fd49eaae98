"""``build-h3wb stage=NAME [overrides]`` (or ``python -m build_h3wb``): run one stage, or ``stage=all``."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from build_h3wb.config import register_configs

register_configs()


def config_path() -> str:
    """Where Hydra finds ``config.yaml``: the checkout's top-level ``conf/``, else the copy inside the installed wheel.

    The checkout keeps its configuration in ``conf/`` beside the package; a wheel carries the same files as the
    package ``build_h3wb.conf`` (see pyproject.toml), which Hydra reads through ``pkg://``.
    """
    checkout = Path(__file__).resolve().parent.parent / "conf"
    if (checkout / "config.yaml").is_file() and (checkout / "__init__.py").is_file():
        return str(checkout)
    return "pkg://build_h3wb.conf"


@hydra.main(version_base="1.3", config_path=config_path(), config_name="config")
def main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    from build_h3wb.stages import run_stage

    run_stage(cfg)


if __name__ == "__main__":
    main()
