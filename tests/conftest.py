"""Test-wide settings: offline hub, no progress bars, a private feature cache, seeded and single-threaded torch."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("NEUROINSPECT_NO_PROGRESS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402

#: torch's thread count in a process that runs tests (set in pytest_configure)
_THREADS = 1


def _xdist_controller(config: pytest.Config) -> bool:
    """Whether this process hands tests out to pytest-xdist workers and runs none itself (as in
    xdist's own check; ``--collect-only`` collects in this process)."""
    return (
        not hasattr(config, "workerinput")
        and config.getoption("dist", "no") != "no"
        and bool(config.getoption("tx", None))
        and not config.getoption("collectonly")
    )


def pytest_configure(config: pytest.Config) -> None:
    # The xdist controller only hands tests out: importing torch there (about 4 CPU s) would delay the
    # start of the workers, which import it themselves.
    if _xdist_controller(config):
        return
    global _THREADS
    import torch

    import neuroinspect  # noqa: F401  (torchvision fix before anything imports torchvision)

    # Under pytest-xdist each worker gets one thread, so workers do not fight over the cores.
    torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else max(1, min(2, os.cpu_count() or 1)))
    _THREADS = torch.get_num_threads()


@pytest.fixture(autouse=True)
def _isolated_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    import torch

    monkeypatch.setenv("NEUROINSPECT_CACHE", str(tmp_path_factory.getbasetemp() / "ni-cache"))
    torch.manual_seed(0)
    yield
    # a sweep run in this process (workers = 0) sets torch's threads to its cpus_per_task (default: every
    # core) and leaves them so; two xdist workers at two threads each on two cores run slower than at one
    if torch.get_num_threads() != _THREADS:
        torch.set_num_threads(_THREADS)


#: dataset parameters of the tiny spurious-shapes checkpoint shared by the command-line tests
TINY_SHAPES = {"image_size": 32, "n_train": 24, "n_val": 8, "n_test": 8}


@pytest.fixture(scope="session")
def tiny_shapes_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init resnet18 checkpoint (32 px, 2 classes) for spurious-shapes with :data:`TINY_SHAPES`.

    Shared by several test modules: treat it as read-only.
    """
    import torch

    from neuroinspect.harness.checkpoint import save_checkpoint
    from neuroinspect.harness.models import create_model

    torch.manual_seed(0)
    surface = create_model("resnet18", num_classes=2, image_size=32)
    path = tmp_path_factory.mktemp("tiny-shapes") / "r18.pt"
    save_checkpoint(path, surface, ["triangle", "square"], "spurious-shapes", TINY_SHAPES)
    return path


@pytest.fixture(scope="session")
def tiny_shapes_vit_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init ``vit_tiny_patch16_224`` at 32 px (a 2×2 patch grid) for spurious-shapes with
    :data:`TINY_SHAPES`; read-only."""
    import torch

    from neuroinspect.harness.checkpoint import save_checkpoint
    from neuroinspect.harness.models import create_model

    torch.manual_seed(0)
    surface = create_model("vit_tiny_patch16_224", num_classes=2, image_size=32)
    path = tmp_path_factory.mktemp("tiny-shapes-vit") / "vit.pt"
    save_checkpoint(path, surface, ["triangle", "square"], "spurious-shapes", TINY_SHAPES)
    return path


# -- real services: PostgreSQL and a browser (tests/services.py) ------------------------------------


def _missing(reason: str) -> None:
    from _services import services_required

    if services_required():
        pytest.fail(f"{reason} (NEUROINSPECT_REQUIRE_SERVICES=1: CI needs it; see scripts/setup-system.sh)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pg_server():  # noqa: ANN201
    """A throwaway PostgreSQL cluster on 127.0.0.1 for this test process (started on first use)."""
    from _services import postgres_bindir, postgres_server

    if postgres_bindir() is None:
        _missing("no PostgreSQL server binary (initdb) on this machine: PostgreSQL cases skipped")
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install -e '.[study]')")
    with postgres_server() as server:
        yield server


@pytest.fixture
def postgres_url(pg_server, request: pytest.FixtureRequest):  # noqa: ANN001, ANN201
    """The SQLAlchemy URL of a fresh, empty PostgreSQL database, dropped after the test."""
    import re
    import uuid

    name = "t_" + re.sub(r"[^a-z0-9]", "_", request.node.name.lower())[:40] + "_" + uuid.uuid4().hex[:8]
    url = pg_server.create_database(name)
    yield url
    pg_server.drop_database(name)


@pytest.fixture(scope="session")
def browser():  # noqa: ANN201
    """Debian's chromium driven by Playwright, headless (``playwright install`` cannot download one here)."""
    from _services import CHROMIUM_ARGS, chromium_path

    path = chromium_path()
    if path is None:
        _missing("no chromium on this machine (apt-get install chromium): browser tests skipped")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


# -- under mutmut (benchmarks/mutation_score.py): no services --------------------------------------------

#: fixtures that start a server or a browser; a test that needs one (directly or through another
#: fixture) is left out of a mutation run, as are tests with ``ray`` as a word of their name
_SERVICE_FIXTURES = {"browser", "pg_server", "postgres_url"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Tests marked ``long`` (10-30 s each, waiting on a browser, a server or a subprocess) run first: one
    # of them handed out last would keep one xdist worker busy long after the other ran out of tests.
    # The order is otherwise kept (a stable sort), so each module's tests stay together.
    items.sort(key=lambda item: item.get_closest_marker("long") is None)
    # mutmut runs the tests once per mutant; a browser, a database cluster or a Ray instance per mutant
    # would make a run take days, and those tests check wiring, not the numbers being mutated.
    if "MUTANT_UNDER_TEST" not in os.environ:
        return
    import re

    def service(item: pytest.Item) -> bool:
        names = set(getattr(item, "fixturenames", ()))
        return bool(names & _SERVICE_FIXTURES) or re.search(r"(^|_)ray(_|$|\[)", item.name) is not None

    dropped = [item for item in items if service(item)]
    if dropped:
        items[:] = [item for item in items if not service(item)]
        config.hook.pytest_deselected(items=dropped)
