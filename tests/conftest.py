"""Shared test fixtures: the ../shared folder, an isolated user cache, and a light thread count."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

# The test machines are shared: keep every test to two threads.
torch.set_num_threads(2)


@pytest.fixture(scope="session", autouse=True)
def _isolated_user_cache(tmp_path_factory: pytest.TempPathFactory):
    """Point CHITA_STUDIO_CACHE at a fresh folder for the session, so tests never touch the user's cache."""
    previous = os.environ.get("CHITA_STUDIO_CACHE")
    os.environ["CHITA_STUDIO_CACHE"] = str(tmp_path_factory.mktemp("chita-studio-cache"))
    torch.set_num_threads(2)
    yield
    if previous is None:
        os.environ.pop("CHITA_STUDIO_CACHE", None)
    else:
        os.environ["CHITA_STUDIO_CACHE"] = previous


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` beside the checkout (real checkpoints and data). CI guarantees it; fail loudly if absent."""
    path = (REPO_ROOT.parent / "shared").resolve()
    if not (path / "models").is_dir() or not (path / "data").is_dir():
        pytest.fail(
            f"../shared is missing or incomplete (looked for {path}/models and {path}/data). "
            "Tests marked 'shared' need the literature's checkpoints and data beside the checkout; "
            "CI provides them.",
            pytrace=False,
        )
    return path
