"""Shared pytest fixtures: repository root and the optional RoadScene development data."""
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """Absolute path of the repository root (the folder holding setup.py)."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def roadscene_dir(repo_root: Path) -> Path:
    """``../shared/data/roadscene_dev`` relative to the repo root; skips the test when absent."""
    path = (repo_root / ".." / "shared" / "data" / "roadscene_dev").resolve()
    if not (path / "visible").is_dir() or not (path / "thermal").is_dir():
        pytest.skip(f"RoadScene development data not found at {path}")
    return path
