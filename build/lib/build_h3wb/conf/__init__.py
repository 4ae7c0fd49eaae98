# conf/ is shipped in the wheel as the package build_h3wb.conf (see pyproject.toml), so Hydra finds it there.
