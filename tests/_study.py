"""Helpers for the study tests: spec files, and small bundles made without a model.

:func:`fake_bundle` runs the real trial builders of the task types and the real manifest assembly
(:class:`neuroinspect.studies.bundle.Builder`) on synthetic coloured images instead of a model's
visualizations, so the session logic, the app and the storage can be tested in well under a second.
The real build (model, visualizers, ground truth) is tested on the tiny checkpoint elsewhere.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from neuroinspect.studies.bundle import MANIFEST, Builder, load_bundle
from neuroinspect.studies.spec import Condition, StudySpec, load_spec

CONDITIONS = {
    "2afc": ["none", "exemplars", "lucent"],
    "labelling": ["none", "exemplars", "lucent"],
    "mistake": ["none", "exemplars"],
    "rating": ["exemplars", "lucent"],
}


def write_spec(
    folder: Path, task: str, *, name: str | None = None, extra: str = "", design: str = "", **top: Any
) -> Path:
    """A study spec file for ``task`` under ``folder`` (units, a small design, the usual conditions)."""
    folder.mkdir(parents=True, exist_ok=True)
    name = name or f"{task}-study"
    lines = [f'title = "A {task} study"', f'task = "{task}"', "seed = 3", f'out = "{name}-out"']
    for k, v in top.items():
        lines.append(f"{k} = {json.dumps(v)}")
    lines += ["[model]", 'dataset = "spurious-shapes"', "image_size = 32"]
    lines += ["[units]"]
    if task == "mistake":
        lines.append("sample = 4")
    else:
        lines += ["neurons = [1, 2, 3, 4, 5, 6]", "practice_neurons = [7]"]
    lines += [
        "[design]",
        design or "trials_per_condition = 2\npractice_trials = 1\ncatch_trials = 1\nrepeated_trials = 1",
    ]
    for c in CONDITIONS[task]:
        lines.append("[[conditions]]")
        lines.append(f'name = "{c}"')
        lines.append("baseline = true" if c == "none" else f'visualizer = "{c}"')
    lines.append(extra)
    path = folder / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _color(seed: Any) -> np.ndarray:
    rng = np.random.default_rng(abs(hash(str(seed))) % (2**32))
    img = np.zeros((16, 16, 3), dtype=np.uint8)
    img[:] = rng.integers(0, 256, 3)
    img[4:12, 4:12] = rng.integers(0, 256, 3)
    return img


class FakeBuilder(Builder):
    """The bundle builder with synthetic material instead of a model (see the module docstring)."""

    LABELS = ("spurious", "core", "mixed", "dead")

    def __init__(self, spec: StudySpec, root: Path) -> None:
        super().__init__(spec, root, show_progress=False, log=lambda m: None, device="cpu")
        spec_units = spec.units
        if spec.task == "mistake":
            units = [
                {
                    "key": f"sample:{i}",
                    "sample": i,
                    "class_idx": 0,
                    "label": 0,
                    "pred": 1,
                    "truth": "background" if i % 2 == 0 else "object",
                    "blamed": [i + 1, i + 2],
                }
                for i in range(int(spec_units.sample or 4) + spec.design.practice_trials)
            ]
            n = int(spec_units.sample or 4)
            self.main_units, self.practice_units = units[:n], units[n:]
        else:
            self.main_units = [
                {"key": f"neuron:{n}", "neuron": n, "class_idx": None} for n in spec_units.neurons or []
            ]
            self.practice_units = [
                {"key": f"neuron:{n}", "neuron": n, "class_idx": None}
                for n in spec_units.practice_neurons or []
            ]

    def unit_truth(self, unit: dict[str, Any]) -> str | None:
        if unit.get("neuron") is None:
            return None
        return self.LABELS[int(unit["neuron"]) % 2]  # spurious for even neurons, core for odd ones

    def explanation(
        self, cond: Condition, unit: dict[str, Any], roles: tuple[str, ...] = ("max",)
    ) -> list[dict[str, Any]]:
        rels = [self.writer.add(_color((cond.name, unit["key"], i))) for i in range(3)]
        panels = [
            {
                "role": "max",
                "title": "Images that make the neuron fire most",
                "images": rels,
                "montage": self.writer.montage(rels, 48),
            }
        ]
        if "min" in roles and cond.visualizer == "exemplars":
            mins = [self.writer.add(_color((cond.name, unit["key"], "min", i))) for i in range(3)]
            panels.append(
                {
                    "role": "min",
                    "title": "Images that make the neuron fire least",
                    "images": mins,
                    "montage": self.writer.montage(mins, 48),
                }
            )
        return panels

    def natural_panels(self, unit: dict[str, Any]) -> list[dict[str, Any]]:
        return self.explanation(
            Condition(name="_natural", visualizer="exemplars"), unit, roles=("max", "min")
        )

    def queries(self, unit: dict[str, Any]) -> tuple[str, str]:
        return self.writer.add(_color(("qmax", unit["key"]))), self.writer.add(_color(("qmin", unit["key"])))

    def mistake_panel(self, unit: dict[str, Any]) -> dict[str, Any]:
        rel = self.writer.add(_color(("input", unit["key"])))
        return {
            "role": "input",
            "title": "The model called this image a «square»; it is a «triangle».",
            "images": [rel],
            "montage": self.writer.montage([rel], 64),
        }

    def model_info(self) -> dict[str, Any]:
        return {
            "name": self.spec.model,
            "arch": "resnet18",
            "image_size": 32,
            "dataset": self.spec.dataset,
            "dataset_params": {},
            "checkpoint_sha256": None,
            "classes": ["triangle", "square"],
        }


def fake_bundle(spec: StudySpec) -> Any:
    """Write a bundle for ``spec`` with :class:`FakeBuilder` and load it (hashes verified)."""
    root = spec.bundle_dir
    root.mkdir(parents=True, exist_ok=True)
    builder = FakeBuilder(spec, root)
    manifest = builder.assemble()
    (root / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return load_bundle(spec)


def fake_study(folder: Path, task: str, **kwargs: Any) -> tuple[StudySpec, Any]:
    """A spec and its fake bundle."""
    spec = load_spec(write_spec(folder, task, **kwargs))
    return spec, fake_bundle(spec)


class StreamlitServer:
    """``streamlit run`` of the study app for ``spec`` on 127.0.0.1 and a free port; stopped by its pid."""

    def __init__(self, spec_path: Path, env: dict[str, str] | None = None, port: int | None = None) -> None:
        from _services import free_port

        self.spec_path = Path(spec_path)
        self.port = port or free_port()
        self.env = env or {}
        self.proc: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self, timeout: float = 90.0) -> StreamlitServer:
        import os
        import subprocess
        import time
        import urllib.request

        from neuroinspect.commands.study import streamlit_command

        env = dict(os.environ, **self.env)
        log = open(self.spec_path.parent / f"streamlit-{self.port}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            streamlit_command(self.spec_path, "127.0.0.1", self.port),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {self.proc.returncode}; see {log.name}")
            try:
                with urllib.request.urlopen(self.url + "_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        return self
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"streamlit did not answer on {self.url} within {timeout} s")

    def kill(self) -> None:
        """SIGKILL: no shutdown handlers run (a crash)."""
        import signal

        if self.proc is not None and self.proc.poll() is None:
            os_kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except Exception:  # noqa: BLE001
                self.kill()

    def __enter__(self) -> StreamlitServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def os_kill(pid: int, sig: int) -> None:
    import os

    os.kill(pid, sig)


# -- driving the app in a real browser (the e2e test and scripts/study_screenshots.py) ------------------------
_IDLE = (
    "() => { const app = document.querySelector('[data-testid=\"stApp\"]');"
    " return app && app.getAttribute('data-test-script-state') === 'notRunning'"
    " && !document.querySelector('[data-stale=\"true\"]'); }"
)


def wait_idle(page: Any, timeout: float = 90_000) -> None:
    """Until Streamlit has finished the script run (its app root says notRunning, no stale elements)
    and is still idle 300 ms later: an answer's run can end in ``st.rerun()``, and on a loaded machine
    the next run may start after a single idle check."""
    for _ in range(20):
        page.wait_for_function(_IDLE, timeout=timeout)
        page.wait_for_timeout(300)
        if page.evaluate(_IDLE):
            return
    raise AssertionError("Streamlit never stayed idle for 300 ms")


def click(page: Any, locator: Any, until: str) -> None:
    """Click, then wait until the selector ``until`` is on the page and Streamlit is idle again.

    A locator that matches more than one element (a previous run's button not yet removed under load)
    is waited on until it matches one."""
    for _ in range(100):
        if locator.count() <= 1:
            break
        page.wait_for_timeout(300)
    locator.click()
    page.wait_for_selector(until, timeout=90_000)
    wait_idle(page)


def progress_text(page: Any) -> str:
    bar = page.locator('[data-testid="stProgress"]')
    return str(bar.first.inner_text()) if bar.count() else ""


def answer_current(page: Any, option: int = 0, confidence: int = 2) -> None:
    """Pick an answer (and a confidence where asked), submit, and wait for the next page."""
    radios = page.locator('[data-testid="stRadio"]')
    radios.first.locator('[data-testid="stRadioOption"]').nth(option).click()
    if radios.count() > 1:
        radios.nth(1).locator('[data-testid="stRadioOption"]').nth(confidence).click()
    before = progress_text(page)
    page.get_by_role("button", name="Submit answer").click()
    page.wait_for_function(
        "(b) => { const p = document.querySelector('[data-testid=\"stProgress\"]');"
        " return (p && p.innerText !== b) || [...document.querySelectorAll('button')]"
        ".some(x => ['Continue', 'Finish'].includes(x.innerText.trim())); }",
        arg=before,
        timeout=90_000,
    )
    wait_idle(page)


def heading(page: Any) -> str:
    h = page.locator("h1, h3")
    return str(h.first.inner_text()) if h.count() else ""
