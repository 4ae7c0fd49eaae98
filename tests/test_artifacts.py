import h5py
import numpy as np
import pytest

from build_h3wb.artifacts import (
    BuildDirError,
    StageDir,
    atomic_h5,
    atomic_path,
    config_diff,
    config_hash,
    read_attrs,
    require_dataset,
    write_json,
)


def test_config_hash_is_stable_and_order_free():
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})


def test_config_diff_names_dotted_keys():
    d = config_diff({"x": {"y": 1, "z": 2}}, {"x": {"y": 3, "z": 2}, "w": 0})
    assert d == ["w: '<absent>' -> 0", "x.y: 1 -> 3"]


def test_atomic_path_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_atomic_h5_appears_only_when_complete(tmp_path):
    path = tmp_path / "s" / "seq.h5"
    with pytest.raises(KeyboardInterrupt):
        with atomic_h5(path, {"config_hash": "abc"}) as f:
            f["x"] = np.zeros(3)
            raise KeyboardInterrupt
    assert not path.exists() and (not path.parent.exists() or not any(path.parent.iterdir()))
    with atomic_h5(path, {"config_hash": "abc", "config": {"k": 1}}) as f:
        f["x"] = np.arange(3)
    assert read_attrs(path)["config_hash"] == "abc"
    with h5py.File(path) as f:
        with pytest.raises(BuildDirError, match=r"dataset 'y' is missing"):
            require_dataset(f, "y")
        with pytest.raises(BuildDirError, match=r"has shape \(3,\), expected"):
            require_dataset(f, "x", (2,))


def test_stage_dir_resume_and_config_mismatch(tmp_path):
    sd = StageDir(tmp_path, "detect", {"a": 1})
    sd.check_compatible()
    p = sd.sequence_path("S1", "Walking 1")
    assert not sd.is_done(p)
    with atomic_h5(p, {"config_hash": sd.hash, "config": sd.config}) as f:
        f["x"] = np.zeros(1)
    assert sd.is_done(p)
    # interrupted before the manifest: a different config is still caught from the unit files
    other = StageDir(tmp_path, "detect", {"a": 2})
    with pytest.raises(BuildDirError, match=r"a: 1 -> 2"):
        other.check_compatible()
    sd.write_manifest({"n": 1}, ["S1/Walking 1"])
    with pytest.raises(BuildDirError, match=r"different configuration:\n  a: 1 -> 2\nUse another build.dir"):
        other.check_compatible()
    assert p.exists()  # nothing lost
    StageDir(tmp_path, "detect", {"a": 2}, overwrite=True).check_compatible()
    assert not p.exists()


def test_truncated_unit_is_recomputed_not_trusted(tmp_path):
    sd = StageDir(tmp_path, "detect", {"a": 1})
    p = sd.sequence_path("S1", "x")
    p.parent.mkdir(parents=True)
    p.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 10)
    assert not sd.is_done(p)


def test_manifest_required_downstream(tmp_path):
    with pytest.raises(BuildDirError, match="stage 'detect' has not finished"):
        StageDir(tmp_path, "detect", {}).read_manifest()
    write_json(tmp_path / "detect" / "manifest.json", {"config_hash": "x"})
    assert StageDir(tmp_path, "detect", {}).read_manifest()["config_hash"] == "x"
    (tmp_path / "detect" / "manifest.json").write_text("{broken")
    with pytest.raises(BuildDirError, match="corrupt"):
        StageDir(tmp_path, "detect", {}).read_manifest()


def test_artifacts_get_the_usual_permissions_not_mkstemps_private_ones(tmp_path):
    import os
    import stat

    from build_h3wb.artifacts import write_json

    write_json(tmp_path / "a.json", {"x": 1})
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o666 & ~umask


def test_a_full_disk_is_a_clear_error_and_leaves_nothing(tmp_path, monkeypatch):
    import errno
    from pathlib import Path

    target = tmp_path / "S1" / "Walking 1.h5"
    with atomic_h5(target, {"config_hash": "x"}) as f:
        f.create_dataset("a", data=np.arange(3))
    before = target.read_bytes()

    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(BuildDirError, match=r"no space left on the device writing .*Walking 1.h5"):
        with atomic_h5(target, {"config_hash": "y"}) as f:
            f.create_dataset("a", data=np.arange(5))
    assert target.read_bytes() == before
    assert sorted(p.name for p in target.parent.iterdir()) == ["Walking 1.h5"]
