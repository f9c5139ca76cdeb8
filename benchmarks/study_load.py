"""Load and faults of the study app's storage and session logic, on SQLite and on PostgreSQL.

    python benchmarks/study_load.py                 # 50 participants at once, both databases
    python benchmarks/study_load.py --smoke         # a few seconds: 8 participants, fewer trials
    python benchmarks/study_load.py --backends sqlite --participants 100 --out load.json

For each database (a SQLite file in WAL mode, the app's settings; a throwaway PostgreSQL cluster on
127.0.0.1 with PostgreSQL's default durability: fsync and synchronous commit on):

1. **Load.** N simulated participants (random observers, no think time) go through a 2AFC study at
   once on N threads through :class:`~neuroinspect.studies.session.StudyRuntime` (the app's session
   logic), and submit every answer TWICE (a double click). Counted: answers given, rows recorded,
   duplicates refused, duplicate (participant, trial) rows in the database (must be 0), and the time to
   record an answer (the first submission: a read, a write transaction, commit) — p50 / p95 / p99 ms,
   goal p95 <= 50 ms. Twice: a *burst* (each participant answers again as soon as the last answer is
   recorded: 50 clients hammering one process, so the latency is mostly queueing for the CPUs) and
   *paced* (``--pause`` seconds between a participant's answers, starts spread over one pause: still
   25 answers/s at the default 2 s, faster than people answer image questions).
2. **Faults.** N new participants are run by a separate (forked) worker process (the "server") that keeps a
   client-side log of each participant's resume token and of each answer the server acknowledged.
   When about 40% of the answers are in, the worker is killed with SIGKILL. Then: every acknowledged
   answer must be in the database (nothing lost), a new worker resumes EVERY participant with its
   token and finishes the study; the database must then hold exactly participants x trials answers
   with no duplicates and every participant complete.

The bundle is a small synthetic 2AFC bundle made by the real trial builders (``tests/_study.py``):
the images do not matter here, the database does. The figures (JSON with ``--out``) are what the
README reports; the machine is shared, so they vary with its load.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _load(name: str) -> Any:
    """``tests/<name>.py`` as a module (one copy of the test services and study helpers)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def _design(smoke: bool) -> str:
    if smoke:
        return "trials_per_condition = 2\npractice_trials = 1\ncatch_trials = 1\nrepeated_trials = 1"
    return "trials_per_condition = 4\npractice_trials = 2\ncatch_trials = 2\nrepeated_trials = 2"


def _runtime(spec_path: Path, url: str) -> Any:
    from neuroinspect.studies.bundle import load_bundle
    from neuroinspect.studies.session import StudyRuntime
    from neuroinspect.studies.spec import load_spec
    from neuroinspect.studies.storage import Store

    spec = load_spec(spec_path)
    return StudyRuntime(spec, load_bundle(spec), Store(url))


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, int(round(q / 100 * (len(s) - 1)))))
    return s[k]


def _counts(rt: Any) -> dict[str, int]:
    import sqlalchemy as sa

    from neuroinspect.studies import storage as db

    with rt.store.read() as conn:
        rows = conn.execute(sa.select(sa.func.count()).select_from(db.response)).scalar_one()
        dup = conn.execute(
            sa.select(sa.func.count()).select_from(
                sa.select(db.response.c.participant_pk, db.response.c.trial_id)
                .group_by(db.response.c.participant_pk, db.response.c.trial_id)
                .having(sa.func.count() > 1)
                .subquery()
            )
        ).scalar_one()
        complete = conn.execute(
            sa.select(sa.func.count())
            .select_from(db.participant)
            .where(db.participant.c.completed_at.is_not(None))
        ).scalar_one()
        people = conn.execute(sa.select(sa.func.count()).select_from(db.participant)).scalar_one()
    return {
        "rows": int(rows),
        "duplicate_rows": int(dup),
        "complete": int(complete),
        "participants": int(people),
    }


# -- phase 1: load -----------------------------------------------------------------------------------------
def load_phase(spec_path: Path, url: str, n: int, pause: float = 0.0) -> dict[str, Any]:
    """``pause`` 0: every participant submits its next answer as soon as the last one is recorded (a
    burst: the server's throughput, and queueing for 2 CPUs, decide the latency); ``pause`` > 0: that
    many seconds between a participant's answers, the participants' starts spread over one pause."""
    import random

    from neuroinspect.studies.observers import run_participant

    rt = _runtime(spec_path, url)
    trials = len(rt.bundle.trials_of_kind("practice")) + _per_participant_trials(rt)
    offsets = random.Random(0).sample(range(1000), n)

    def one(i: int) -> Any:
        if pause:
            time.sleep(pause * offsets[i] / 1000)
        return run_participant(
            rt, None, f"load-{i:03d}", "random", i, virtual_time=False, resubmit=True, think_s=pause
        )

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=n) as pool:
        runs = list(pool.map(one, range(n)))
    wall = time.perf_counter() - t0
    lat = [x for r in runs for x in r.latencies]
    counts = _counts(rt)
    rt.store.dispose()
    return {
        "participants": n,
        "trials_per_participant": trials,
        "answers_given": sum(r.given for r in runs),
        "answers_recorded_by_the_server": sum(r.recorded for r in runs),
        "resubmissions": sum(r.resubmissions for r in runs),
        "resubmissions_recorded": sum(1 for r in runs if r.error),
        "rows_in_database": counts["rows"],
        "duplicate_rows": counts["duplicate_rows"],
        "complete": counts["complete"],
        "record_ms_p50": 1000 * statistics.median(lat),
        "record_ms_p95": 1000 * _pct(lat, 95),
        "record_ms_p99": 1000 * _pct(lat, 99),
        "record_ms_max": 1000 * max(lat),
        "wall_s": wall,
        "answers_per_s": len(lat) / wall,
        "pause_s": pause,
    }


def _per_participant_trials(rt: Any) -> int:
    from neuroinspect.studies.session import trial_sequence

    _, rows = trial_sequence(rt.spec, rt.bundle, 0)
    return len(rows) - len(rt.bundle.trials_of_kind("practice"))


# -- phase 2: SIGKILL of the worker mid-study and a restart -----------------------------------------------------
def worker(
    spec: str,
    url: str,
    ids_file: str,
    tokens_file: str,
    acks_file: str,
    think: float,
    resume: bool,
    summary: str,
) -> None:
    """The "server" process: runs (or, with ``resume``, resumes with their tokens) the participants of
    ``ids_file`` and keeps the client-side logs of tokens and acknowledged answers."""
    from neuroinspect.studies.observers import run_participant
    from neuroinspect.studies.session import AccessDenied

    rt = _runtime(Path(spec), url)  # a new engine: nothing of the parent's connection pool is used
    ids = Path(ids_file).read_text().split()
    tokens: dict[str, str] = {}
    if resume and Path(tokens_file).exists():
        for line in Path(tokens_file).read_text().splitlines():
            pid, _, tok = line.partition(" ")
            tokens[pid] = tok
    lock = threading.Lock()
    tok_f = open(tokens_file, "a", encoding="utf-8")  # noqa: SIM115
    ack_f = open(acks_file, "a", encoding="utf-8")  # noqa: SIM115

    def on_token(pid: str, token: str) -> None:
        with lock:
            tok_f.write(f"{pid} {token}\n")
            tok_f.flush()

    def on_answer(pid: str, trial_id: str, response: str) -> None:
        with lock:  # written only after the answer was committed: an acknowledgement
            ack_f.write(f"{pid}\t{trial_id}\t{response}\n")
            ack_f.flush()

    def one(i: int, pid: str) -> Any:
        try:
            return run_participant(
                rt,
                None,
                pid,
                "random",
                1000 + i,
                virtual_time=False,
                token=tokens.get(pid),
                on_token=on_token,
                on_answer=on_answer,
                think_s=think,
            )
        except AccessDenied:  # killed between creating the session and logging its token
            return None

    with ThreadPoolExecutor(max_workers=len(ids)) as pool:
        runs = list(pool.map(one, range(len(ids)), ids))
    done = [r for r in runs if r is not None]
    Path(summary).write_text(
        json.dumps(
            {
                "resumed": sum(r.resumed for r in done),
                "completed": sum(r.completed for r in done),
                "refused_without_token": sum(r is None for r in runs),
            }
        )
    )
    rt.store.dispose()


def fault_phase(spec_path: Path, url: str, n: int, work: Path, think: float) -> dict[str, Any]:
    import multiprocessing

    import sqlalchemy as sa

    from neuroinspect.studies import storage as db

    ids = [f"fault-{i:03d}" for i in range(n)]
    (work / "ids.txt").write_text("\n".join(ids) + "\n")
    tokens, acks, summary = work / "tokens.txt", work / "acks.tsv", work / "summary.json"
    for f in (tokens, acks, summary):
        f.unlink(missing_ok=True)
    rt = _runtime(spec_path, url)
    per = len(rt.bundle.trials_of_kind("practice")) + _per_participant_trials(rt)
    expected = n * per
    rt.store.dispose()  # no pooled connection crosses the fork
    # A forked child (not a new interpreter): it starts in milliseconds instead of importing torch again.
    ctx = multiprocessing.get_context("fork")
    args = (str(spec_path), url, str(work / "ids.txt"), str(tokens), str(acks), think)
    proc = ctx.Process(target=worker, args=(*args, False, str(summary)))
    proc.start()
    t0 = time.perf_counter()
    killed_at = None
    rows = 0
    while proc.is_alive() and time.perf_counter() - t0 < 600:
        rows = _counts(rt)["rows"]
        if rows >= 0.4 * expected:
            assert proc.pid is not None
            os.kill(proc.pid, signal.SIGKILL)
            proc.join()
            killed_at = _counts(rt)["rows"]  # answers committed before the process died
            break
        time.sleep(0.05)
    if killed_at is None:
        proc.join()
        raise RuntimeError(
            f"the worker finished before it could be killed (rows {rows}/{expected}); lower --think"
        )
    acked = [line.split("\t") for line in acks.read_text().splitlines() if line.count("\t") == 2]
    with rt.store.read() as conn:
        stored = {
            (r.participant_id, r.trial_id, r.response)
            for r in conn.execute(
                sa.select(
                    db.participant.c.participant_id, db.response.c.trial_id, db.response.c.response
                ).select_from(
                    db.response.join(db.participant, db.participant.c.pk == db.response.c.participant_pk)
                )
            )
        }
    lost = [a for a in acked if tuple(a) not in stored]
    after_kill = _counts(rt)
    with_token = len(tokens.read_text().splitlines()) if tokens.exists() else 0
    rt.store.dispose()
    t1 = time.perf_counter()
    again = ctx.Process(target=worker, args=(*args, True, str(summary)))
    again.start()
    again.join(900)
    if again.exitcode != 0 or not summary.exists():
        raise RuntimeError(f"the restarted worker failed (exit code {again.exitcode})")
    done = json.loads(summary.read_text())
    final = _counts(rt)
    rt.store.dispose()
    return {
        "participants": n,
        "expected_rows": expected,
        "rows_when_killed": killed_at,
        "acknowledged_before_kill": len(acked),
        "acknowledged_but_lost": len(lost),
        "recorded_without_acknowledgement": after_kill["rows"] - len(acked),
        "participants_with_token_before_kill": with_token,
        "resumed": done["resumed"],
        "completed_after_restart": done["completed"],
        "refused_without_token": done["refused_without_token"],
        "final_rows": final["rows"],
        "final_duplicate_rows": final["duplicate_rows"],
        "final_complete": final["complete"],
        "restart_wall_s": time.perf_counter() - t1,
    }


# -- main ------------------------------------------------------------------------------------------------------
def run(
    backends: list[str], n: int, smoke: bool, think: float, pause: float, pg: Any = None
) -> dict[str, Any]:
    """``pg``: a running server of ``tests/_services.py`` to use (the tests' own) instead of starting one."""
    services = _load("_services")
    study = _load("_study")
    out: dict[str, Any] = {
        "participants": n,
        "smoke": smoke,
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),  # the machine is shared: how busy it was at the start
        "backends": {},
    }
    tmp = Path(tempfile.mkdtemp(prefix="ni-study-load-"))
    try:
        for backend in backends:
            work = tmp / backend
            work.mkdir()
            if backend == "sqlite":
                urls = [f"sqlite:///{work / f'{phase}.db'}" for phase in ("load", "paced", "fault")]
                out["backends"][backend] = _both(study, work, urls, n, smoke, think, pause)
            else:
                if pg is not None:
                    tag = os.urandom(3).hex()
                    urls = [pg.create_database(f"{phase}_{tag}") for phase in ("load", "paced", "fault")]
                    out["backends"][backend] = _both(study, work, urls, n, smoke, think, pause)
                    continue
                if services.postgres_bindir() is None:
                    if services.services_required():
                        raise RuntimeError(
                            "no PostgreSQL server binary; install it (scripts/setup-system.sh)"
                        )
                    out["backends"][backend] = {"skipped": "no PostgreSQL server binary on this machine"}
                    continue
                # fsync on as deployed (the smoke run only counts, so it takes the fast test settings)
                with services.postgres_server(durable=not smoke) as server:
                    urls = [server.create_database(phase) for phase in ("load", "paced", "fault")]
                    out["backends"][backend] = _both(study, work, urls, n, smoke, think, pause)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _both(
    study: Any, work: Path, urls: list[str], n: int, smoke: bool, think: float, pause: float
) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for phase, url in zip(("load", "paced", "fault"), urls, strict=True):
        spec = study.load_spec(
            study.write_spec(work / phase, "2afc", design=_design(smoke), database_url=url)
        )
        study.fake_bundle(spec)
        print(f"  {phase} ...", file=sys.stderr, flush=True)
        if phase == "load":
            result[phase] = load_phase(spec.path, url, n)
        elif phase == "paced":
            result[phase] = load_phase(spec.path, url, n, pause)
        else:
            result[phase] = fault_phase(spec.path, url, n, work / phase, think)
    return result


def report(res: dict[str, Any]) -> str:
    lines = [
        f"study load and faults: {res['participants']} participants at once ({res['cpus']} CPUs, shared machine, "
        f"load average {res['load_average'][0]:.1f} at the start)"
    ]
    for backend, r in res["backends"].items():
        if "skipped" in r:
            lines.append(f"{backend}: skipped ({r['skipped']})")
            continue
        a, f = r["load"], r["fault"]
        lines.append(
            f"{backend}: {a['answers_given']} answers given, {a['answers_recorded_by_the_server']} recorded, "
            f"{a['rows_in_database']} rows; {a['resubmissions']} resubmissions, {a['resubmissions_recorded']} recorded; "
            f"{a['duplicate_rows']} duplicate rows; burst (no pause): time to record p50 {a['record_ms_p50']:.1f} ms, "
            f"p95 {a['record_ms_p95']:.1f} ms, p99 {a['record_ms_p99']:.1f} ms (goal p95 <= 50 ms); "
            f"{a['answers_per_s']:.0f} answers/s"
        )
        b = r["paced"]
        lines.append(
            f"{backend} paced ({b['pause_s']:g} s between a participant's answers): {b['answers_given']} given, "
            f"{b['rows_in_database']} rows, {b['duplicate_rows']} duplicates; time to record p50 "
            f"{b['record_ms_p50']:.1f} ms, p95 {b['record_ms_p95']:.1f} ms, p99 {b['record_ms_p99']:.1f} ms"
        )
        lines.append(
            f"{backend} SIGKILL at {f['rows_when_killed']}/{f['expected_rows']} rows: {f['acknowledged_before_kill']} "
            f"acknowledged, {f['acknowledged_but_lost']} lost, {f['recorded_without_acknowledgement']} recorded in flight; "
            f"restart: {f['resumed']}/{f['participants']} resumed, {f['completed_after_restart']} completed, "
            f"{f['final_rows']}/{f['expected_rows']} rows, {f['final_duplicate_rows']} duplicates"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None, pg: Any = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--participants", type=int, default=None, help="participants at once (default 50; 8 with --smoke)"
    )
    ap.add_argument("--backends", default="sqlite,postgresql", help="comma list of sqlite, postgresql")
    ap.add_argument("--smoke", action="store_true", help="a few seconds: 8 participants and a short study")
    ap.add_argument("--think", type=float, default=None, help="seconds between answers in the fault phase")
    ap.add_argument(
        "--pause",
        type=float,
        default=None,
        help="seconds between a participant's answers in the paced load phase (default 2; 0.05 with --smoke)",
    )
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    args = ap.parse_args(argv)
    n = args.participants or (8 if args.smoke else 50)
    think = args.think if args.think is not None else (0.01 if args.smoke else 0.02)
    pause = args.pause if args.pause is not None else (0.05 if args.smoke else 2.0)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    bad = [b for b in backends if b not in ("sqlite", "postgresql")]
    if bad:
        ap.error(f"unknown backend {bad[0]!r}; use sqlite and/or postgresql")
    res = run(backends, n, args.smoke, think, pause, pg)
    text = report(res)
    print(text)
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
