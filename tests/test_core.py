"""Registry, atomic writes and provenance: small pieces every result depends on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from neuroinspect.errors import UserError
from neuroinspect.fileio import atomic_write, atomic_write_json
from neuroinspect.registry import Registry
from neuroinspect.runtime import Provenance, package_versions, resolve_device, seed_everything


def test_registry_register_get_summary_and_suggestion() -> None:
    reg: Registry[type] = Registry("finder")

    @reg.register("counterfactual")
    class A:
        """Counterfactual shifts.

        More text."""

    assert reg.get("counterfactual") is A
    assert reg.summary("counterfactual") == "Counterfactual shifts."
    with pytest.raises(UserError, match="Did you mean 'counterfactual'"):
        reg.get("counterfactal")
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("counterfactual")(A)


def test_atomic_write_leaves_the_old_file_when_the_writer_fails(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    atomic_write_json(path, {"a": 1})

    def boom(fh) -> None:  # noqa: ANN001
        fh.write(b'{"a": 2, "trunc')
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(path, boom)
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temporary left behind


def test_provenance_records_versions_device_and_time() -> None:
    with Provenance("cpu") as prov:
        pass
    d = prov.as_dict()
    assert d["device"].startswith("cpu")
    assert d["wall_seconds"] >= 0
    assert d["versions"]["torch"] and d["versions"]["timm"]
    assert set(package_versions(["torch", "no-such-package-xyz"])) == {"torch", "no-such-package-xyz"}
    assert package_versions(["no-such-package-xyz"])["no-such-package-xyz"] is None


def test_resolve_device_errors_are_user_errors() -> None:
    import torch

    assert str(resolve_device("cpu")) == "cpu"
    with pytest.raises(UserError, match="unknown device"):
        resolve_device("tpu-9")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_seed_everything_makes_torch_and_numpy_repeatable() -> None:
    import numpy as np
    import torch

    seed_everything(3)
    a = (torch.rand(3), np.random.rand(3))
    seed_everything(3)
    b = (torch.rand(3), np.random.rand(3))
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_exclusive_lock_makes_another_process_wait_until_it_is_released(tmp_path: Path) -> None:
    """Sweep workers that need the same cached file (a synthetic CLIP) take this lock: while one holds
    it, another process cannot; once released (or the holder dies), it can."""
    import subprocess
    import sys

    from neuroinspect.fileio import exclusive

    lock = tmp_path / "sub" / "clip.pt.lock"
    probe = (
        "import fcntl, sys\n"
        f"fh = open({str(lock)!r}, 'a+b')\n"
        "try:\n"
        "    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        "except BlockingIOError:\n"
        "    sys.exit(3)\n"
    )
    with exclusive(lock):
        assert lock.is_file()  # created, with its folder
        assert subprocess.run([sys.executable, "-c", probe]).returncode == 3
    assert subprocess.run([sys.executable, "-c", probe]).returncode == 0
