"""Run a harness script with the engine venv's Python when this one lacks
BuildGrid (so `python3 tests/remote/X.py` works after install.sh)."""

import os
import sys
from pathlib import Path


def reexec_in_engine_venv(script: str) -> None:
    """Re-run `script` with the venv's Python unless BuildGrid imports here."""
    try:
        import buildgrid  # noqa: F401
        return
    except ImportError:
        pass
    home = Path(os.environ.get("KILN_REMOTE_ENGINE_HOME") or Path.home() / ".cache" / "kiln-test-engine")
    py = home / "venv" / "bin" / "python"
    if py.exists() and not os.environ.get("KILN_ENGINE_REEXEC"):
        os.environ["KILN_ENGINE_REEXEC"] = "1"
        os.execv(str(py), [str(py), os.path.abspath(script), *sys.argv[1:]])
    sys.exit(f"ERROR: BuildGrid is not importable and {py} is missing: run bash tests/remote/install.sh")
