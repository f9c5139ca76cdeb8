"""Test-wide settings: offline hub, no progress bars, a private feature cache, seeded and single-threaded torch."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("NEUROINSPECT_NO_PROGRESS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

import neuroinspect  # noqa: E402,F401  (torchvision fix before anything imports torchvision)

# Under pytest-xdist each worker gets one thread, so workers do not fight over the cores.
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEUROINSPECT_CACHE", str(tmp_path_factory.getbasetemp() / "ni-cache"))
    torch.manual_seed(0)
