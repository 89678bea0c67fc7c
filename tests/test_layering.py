"""The layering of pyproject.toml's import-linter contracts holds: worker/core is pure PyTorch,
the service never imports torch, the shared layer is HTTP-free, workers use only that layer."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_the_import_contracts_hold():
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout
