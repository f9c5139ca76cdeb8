"""Write pytest's assert-rewritten bytecode of the test modules once, on both cores, before a test run.

pytest rewrites the ``assert`` statements of every test module (and ``conftest.py``) in each process
that imports it: both xdist workers, and every pytest that mutmut or a benchmark smoke test starts.
It keeps the result in ``tests/__pycache__`` only when Python may write bytecode, and this
environment sets ``PYTHONDONTWRITEBYTECODE``, so every process did it again: about 9 CPU s each,
25 s of the fast suite's wall time. This writes the same files (pytest's own rewriting and its
hash-checked pyc format: a module whose source changed is simply rewritten again by pytest), and
skips modules whose file is current. It uses pytest internals; if they change, it says so and the
run goes on, only slower.

    python scripts/rewrite_tests.py [tests]
"""

from __future__ import annotations

import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path


class _State:
    """The part of pytest's AssertionState that writing a pyc uses."""

    @staticmethod
    def trace(message: str) -> None:
        pass


def _rewrite(path: str) -> bool:
    """Write the rewritten pyc of one test module; False when it was already current."""
    from _pytest.assertion import rewrite

    fn = Path(path)
    pyc = rewrite.get_cache_dir(fn) / (fn.name[:-3] + rewrite.PYC_TAIL)
    if rewrite._read_pyc(fn, pyc) is not None:
        return False
    pyc.parent.mkdir(exist_ok=True)
    source_hash, code = rewrite._rewrite_test(fn, None)  # type: ignore[arg-type]
    return bool(rewrite._write_pyc(_State(), code, source_hash, pyc))  # type: ignore[arg-type]


def main(argv: list[str]) -> int:
    folder = Path(argv[0] if argv else "tests")
    files = sorted(str(p) for p in [*folder.glob("test_*.py"), folder / "conftest.py"] if p.is_file())
    try:
        with ProcessPoolExecutor(max_workers=2) as pool:
            written = sum(pool.map(_rewrite, files, chunksize=4))
    except Exception as err:  # noqa: BLE001 - an optimization only: the tests run either way
        print(f"rewrite_tests: skipped ({type(err).__name__}: {err}); pytest will rewrite in each process")
        return 0
    if written:
        print(f"rewrite_tests: {written} of {len(files)} test modules rewritten for pytest")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
