"""The generated documentation pages match the code and the measured results they are rendered from."""

import subprocess
import sys

from conftest import REPO


def test_generated_docs_are_up_to_date():
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "render_docs.py"), "--check"], capture_output=True,
                         text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
