"""Start-up time of the command line: wall seconds of quick commands, each a fresh Python process.

    python benchmarks/startup.py              # 7 runs per command, prints the median and the fastest
    python benchmarks/startup.py --smoke      # one run per command (a test runs this)
    python benchmarks/startup.py --imports    # also name the slowest imports of each command

Targets (issue 11): ``neuroinspect --help`` and ``data list`` under 0.5 s, ``methods list`` under 1 s.
It also says whether torch was imported, which is what dominates: importing torch alone takes about
as long as every target together. Listings come from a catalog cached on disk; the "cold" row is the
first listing after an install or a change of the sources, which imports every method once.
To time another checkout (e.g. the commit before a change): ``--checkout DIR``. Timings depend on how busy the machine is; run it on an idle one
(or compare the median of many runs) and say which in a report.
"""

from __future__ import annotations

import argparse
import os
import re
import site
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: (label, arguments, target seconds, cold): ``cold`` runs with an empty cache folder, i.e. the first
#: listing after an install or a source change, which imports every method to build the catalog.
COMMANDS: list[tuple[str, list[str], float | None, bool]] = [
    ("neuroinspect --help", ["--help"], 0.5, False),
    ("neuroinspect data list", ["data", "list"], 0.5, False),
    ("neuroinspect methods list", ["methods", "list"], 1.0, False),
    ("methods list, catalog cold", ["methods", "list"], None, True),
    ("neuroinspect train --help", ["train", "--help"], None, False),
    ("neuroinspect edit --help", ["edit", "--help"], None, False),
]

_PROBE = (
    "import sys, runpy; sys.argv = ['neuroinspect', *sys.argv[1:]]\n"
    "from neuroinspect.cli import main\n"
    "try:\n    code = main()\nexcept SystemExit as e:\n    code = e.code or 0\n"
    "sys.stderr.write('\\nTORCH_IMPORTED=%d\\n' % ('torch' in sys.modules))\n"
    "sys.exit(code)\n"
)


#: Another checkout to time (``--checkout``), instead of the installed package.
CHECKOUT: str | None = None


def run_once(args: list[str], importtime: bool = False, cold: bool = False) -> tuple[float, bool, str]:
    """Wall seconds of one ``neuroinspect ARGS`` in a fresh interpreter, whether torch was imported,
    and the ``-X importtime`` log (empty unless asked). ``cold``: with an empty cache folder."""
    flags = ["-X", "importtime"] if importtime else []
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    if CHECKOUT:
        # -S skips the .pth files, so the editable install's finder cannot shadow the other checkout
        flags.append("-S")
        env["PYTHONPATH"] = os.pathsep.join([CHECKOUT, *site.getsitepackages()])
    cmd = [sys.executable, *flags, "-c", _PROBE, *args]
    if cold:
        env["NEUROINSPECT_CACHE"] = tempfile.mkdtemp(prefix="ni-startup-")
    t0 = time.perf_counter()
    # from a neutral folder: `python -c` puts the current folder first on sys.path
    out = subprocess.run(
        cmd, capture_output=True, text=True, env=env, timeout=300, cwd=CHECKOUT or tempfile.gettempdir()
    )
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"`neuroinspect {' '.join(args)}` failed ({out.returncode}):\n{out.stderr[-2000:]}")
    torch = "TORCH_IMPORTED=1" in out.stderr
    return wall, torch, out.stderr if importtime else ""


def slowest_imports(log: str, n: int = 5) -> list[tuple[float, str]]:
    """The ``n`` top-level imports with the largest cumulative time in a ``-X importtime`` log."""
    rows = []
    for line in log.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if m and len(m.group(2)) <= 1:
            rows.append((int(m.group(1)) / 1e6, m.group(3)))
    return sorted(rows, reverse=True)[:n]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=7, help="runs per command (the median is reported)")
    ap.add_argument("--smoke", action="store_true", help="one run per command")
    ap.add_argument("--imports", action="store_true", help="name the slowest imports of each command")
    ap.add_argument(
        "--checkout",
        default=None,
        help="time the package in this folder (it holds neuroinspect/), e.g. an older commit from "
        "`git archive COMMIT neuroinspect | tar -x -C DIR`",
    )
    args = ap.parse_args(argv)
    global CHECKOUT
    CHECKOUT = str(Path(args.checkout).resolve()) if args.checkout else None
    repeat = 1 if args.smoke else max(1, args.repeat)
    print(f"{'command':<30} {'median s':>9} {'min s':>7} {'target':>7}  torch imported")
    misses = 0
    for label, cmd_args, target, cold in COMMANDS:
        if cold and args.smoke:
            continue  # imports every method: seconds, not what a smoke run is for
        run_once(cmd_args)  # warm the file-system cache (and the catalog); not counted
        times, torch = [], False
        for _ in range(repeat if not cold else min(repeat, 3)):
            wall, torch, _ = run_once(cmd_args, cold=cold)
            times.append(wall)
        med = statistics.median(times)
        ok = "" if target is None else ("" if med <= target else " (over)")
        misses += bool(ok)
        tgt = "-" if target is None else f"{target:.1f}"
        print(f"{label:<30} {med:>9.2f} {min(times):>7.2f} {tgt:>7}  {'yes' if torch else 'no'}{ok}")
        if args.imports:
            _, _, log = run_once(cmd_args, importtime=True, cold=cold)
            for secs, mod in slowest_imports(log):
                print(f"    {secs:6.2f} s  import {mod}")
    print(f"load average: {os.getloadavg()[0]:.2f} (the machine's; timings grow with it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
