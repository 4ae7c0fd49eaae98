import logging

from build_h3wb.progress import Progress, progress


def test_progress_yields_everything_and_logs_without_a_terminal(caplog):
    caplog.set_level(logging.INFO, logger="build_h3wb.progress")
    p = progress(range(5), desc="detect", unit="video", bar=False, every_s=0.0)
    p.set_postfix(fps="3.0")
    assert list(p) == [0, 1, 2, 3, 4]
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("detect: 1/5 video (20%)") and "left" in lines[0] and "fps=3.0" in lines[0]
    assert lines[-1].startswith("detect: 5/5 video (100%)") and "done in" in lines[-1]


def test_progress_is_silent_when_disabled_or_fast(caplog):
    caplog.set_level(logging.INFO, logger="build_h3wb.progress")
    assert list(progress(iter("abc"), desc="x", enabled=False)) == ["a", "b", "c"]
    assert list(progress(iter("abc"), desc="x", bar=False)) == ["a", "b", "c"]  # under every_s: no line
    assert caplog.records == []


def test_progress_bar_on_a_terminal_keeps_items(capsys):
    assert list(Progress([1, 2], desc="seq", bar=True)) == [1, 2]
    assert "seq" in capsys.readouterr().err
