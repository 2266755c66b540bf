"""The Makefile refuses a wrong Python with one line, and re-running does no work."""

import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT


def test_wrong_python_is_refused_with_one_line(tmp_path):
    # A stand-in interpreter that reports itself as Python 3.12.
    fake = tmp_path / "python3.12"
    fake.write_text(
        "#!/bin/bash\n"
        f"exec {sys.executable} -c 'import sys; code = sys.argv[1]; sys.argv = sys.argv[1:]; "
        'sys.version_info = (3, 12, 1, "final", 0); sys.version = "3.12.1 (fake)"; exec(code)\' "${@:2}"\n'
    )
    fake.chmod(0o755)
    shutil.copy(os.path.join(REPO_ROOT, "Makefile"), tmp_path / "Makefile")
    for name in ("requirements.txt", "pyproject.toml"):
        shutil.copy(os.path.join(REPO_ROOT, name), tmp_path / name)
    result = subprocess.run(
        ["make", "-s", "venv", f"PYTHON={fake}"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert "found Python 3.12.1" in errors[0] and "needs Python 3.9-3.11" in errors[0]
    assert not (tmp_path / ".venv").exists()


@pytest.mark.skipif(
    not os.path.exists(os.path.join(REPO_ROOT, ".venv", ".installed-requirements")), reason="run through `make test`"
)
def test_setup_is_idempotent():
    # `make -q` exits 0 only when the targets are up to date: nothing would be redone.
    result = subprocess.run(
        ["make", "-q", ".venv/.installed-requirements", "datasets/synthetic/dataset.json"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
