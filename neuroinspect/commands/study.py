"""``neuroinspect study``: human-understanding studies (build, serve, simulate, status, export).

``study analyze`` lives in :mod:`neuroinspect.commands.study_analyze` (functions ``add_arguments`` and
``run``); when that module is present it is added to the list of actions below.
"""

from __future__ import annotations

import argparse
import importlib
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from neuroinspect.errors import UserError

ADMIN_PASSWORD_ENV = "NEUROINSPECT_STUDY_ADMIN_PASSWORD"
SPEC_ENV = "NEUROINSPECT_STUDY_SPEC"

EXAMPLE = """\
Examples:
  neuroinspect study build configs/studies/shapes-2afc.toml
  NEUROINSPECT_STUDY_ADMIN_PASSWORD=... neuroinspect study serve configs/studies/shapes-2afc.toml --port 8501
  neuroinspect study simulate configs/studies/shapes-2afc.toml --participants 50 --concurrency 8
  neuroinspect study simulate configs/studies/shapes-2afc.toml --participants 20 --observer model=8,careless=2
  neuroinspect study status configs/studies/shapes-2afc.toml
  neuroinspect study export configs/studies/shapes-2afc.toml --out responses.csv
  neuroinspect study export configs/studies/shapes-labelling.toml --labels labels.csv
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    from neuroinspect.cli import _Formatter

    p = subparsers.add_parser(
        "study",
        help="human-understanding study app and its analysis",
        description=(
            "Crowdsourced interpretability studies on the harness's explanations: a TOML spec -> a frozen bundle of "
            "trials (build) -> a Streamlit app on a real database with Prolific links (serve) -> simulated "
            "participants through the same session logic (simulate) -> counts (status) -> a long-format CSV (export)."
        ),
        epilog=EXAMPLE,
        formatter_class=_Formatter,
    )
    sub = p.add_subparsers(dest="study_command", metavar="ACTION")

    b = sub.add_parser(
        "build",
        help="train or load the model, run the visualizers, write the frozen bundle",
        description="Build the study's bundle (images + manifest with content hashes) deterministically from the spec.",
        epilog=EXAMPLE,
        formatter_class=_Formatter,
    )
    b.add_argument("spec", help="study spec (TOML)")
    b.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:N or auto (default: model.device of the spec)"
    )
    b.add_argument("--no-progress", action="store_true", help="hide progress bars")
    b.set_defaults(func=run_build)

    s = sub.add_parser(
        "serve",
        help="run the Streamlit app for participants (and the admin page)",
        description=(
            "Serve the built study. Participants open http://HOST:PORT/?PROLIFIC_PID=...&STUDY_ID=...&SESSION_ID=...; "
            f"the admin page is /?page=admin, its password comes from ${ADMIN_PASSWORD_ENV}."
        ),
        epilog=EXAMPLE,
        formatter_class=_Formatter,
    )
    s.add_argument("spec", help="study spec (TOML)")
    s.add_argument(
        "--address", default="127.0.0.1", help="address to listen on (0.0.0.0 for every interface)"
    )
    s.add_argument("--port", type=int, default=8501, help="port")
    s.set_defaults(func=run_serve)

    m = sub.add_parser(
        "simulate",
        help="simulated participants (model, random, careless observers) through the same session logic",
        description="Run simulated participants against the study's database (they are marked simulated).",
        epilog=EXAMPLE,
        formatter_class=_Formatter,
    )
    m.add_argument("spec", help="study spec (TOML)")
    m.add_argument("--participants", type=int, required=True, help="how many participants")
    m.add_argument("--concurrency", type=int, default=4, help="participants at once (threads)")
    m.add_argument(
        "--observer",
        default="model",
        help="model, random or careless, or a mix with weights such as model=8,random=1,careless=1",
    )
    m.add_argument("--seed", type=int, default=0, help="seed of the observers' decisions")
    m.add_argument("--no-progress", action="store_true", help="hide progress bars")
    m.set_defaults(func=run_simulate)

    t = sub.add_parser(
        "status",
        help="participants started / complete / excluded, responses per condition",
        epilog=EXAMPLE,
        formatter_class=_Formatter,
    )
    t.add_argument("spec", help="study spec (TOML)")
    t.add_argument("--participants", action="store_true", help="also list every participant")
    t.set_defaults(func=run_status)

    e = sub.add_parser(
        "export",
        help="the responses as a long-format CSV, or the labels file of a labelling study",
        description=(
            "Write one row per response (the columns of neuroinspect.studies.responses, documented in the README) "
            "and/or, for a neuron-labelling study, the labels file the debugging pipeline's `labels` selector reads."
        ),
        epilog=EXAMPLE,
        formatter_class=_Formatter,
    )
    e.add_argument("spec", help="study spec (TOML)")
    e.add_argument("--out", default=None, help="response CSV to write")
    e.add_argument(
        "--labels", default=None, help="labels CSV to write (neuron,label,class_idx,n_votes,agreement)"
    )
    e.add_argument(
        "--condition",
        action="append",
        default=[],
        help="labels: count votes under this condition only (repeatable; default: every explanation condition)",
    )
    e.add_argument(
        "--include-excluded", action="store_true", help="labels: keep participants the exclusion rules drop"
    )
    e.add_argument("--force", action="store_true", help="replace existing output files")
    e.set_defaults(func=run_export)

    _add_analyze(sub, _Formatter)
    p.set_defaults(func=_no_action(p))
    return p


def _add_analyze(sub: Any, formatter: type) -> None:
    """``study analyze`` from :mod:`neuroinspect.commands.study_analyze`, when that module is installed."""
    try:
        mod = importlib.import_module("neuroinspect.commands.study_analyze")
    except ModuleNotFoundError as err:
        if err.name != "neuroinspect.commands.study_analyze":
            raise
        return
    a = sub.add_parser(
        "analyze",
        help="statistics and a report from the responses",
        description=(mod.__doc__ or "").strip().splitlines()[0] if mod.__doc__ else None,
        formatter_class=formatter,
    )
    mod.add_arguments(a)
    a.set_defaults(func=mod.run)


def _no_action(parser: argparse.ArgumentParser) -> Any:
    def run(args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    return run


def _spec(path: str) -> Any:
    from neuroinspect.studies.spec import load_spec

    return load_spec(path)


def _runtime(spec: Any, verify: bool = True) -> Any:
    from neuroinspect.studies.bundle import load_bundle
    from neuroinspect.studies.session import StudyRuntime
    from neuroinspect.studies.storage import open_store

    bundle = load_bundle(spec, verify=verify)
    return StudyRuntime(spec, bundle, open_store(spec.database_url))


# -- build --------------------------------------------------------------------------------------------------
def run_build(args: argparse.Namespace) -> int:
    from neuroinspect.studies.bundle import build_bundle

    spec = _spec(args.spec)
    bundle = build_bundle(spec, show_progress=not args.no_progress, device=args.device)
    kinds: dict[str, int] = {}
    for t in bundle.manifest["trials"]:
        kinds[t["kind"]] = kinds.get(t["kind"], 0) + 1
    print(
        f"study {spec.id} ({spec.task}): {', '.join(f'{n} {k}' for k, n in kinds.items())} trials over "
        f"{len(bundle.main_units)} units and {len(spec.conditions)} conditions ({', '.join(spec.condition_names)})"
    )
    print(f"bundle: {bundle.path}  (manifest sha256 {bundle.hash[:16]})")
    print(
        f"next: neuroinspect study serve {args.spec}   or   neuroinspect study simulate {args.spec} --participants 50"
    )
    return 0


# -- serve --------------------------------------------------------------------------------------------------
def app_path() -> Path:
    return Path(__file__).resolve().parent.parent / "studies" / "app.py"


def streamlit_command(spec_path: str | Path, address: str, port: int) -> list[str]:
    """The ``streamlit run`` command line that serves the study app for ``spec_path``."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app_path()),
        "--server.address",
        address,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "minimal",
        "--theme.base",
        "light",
        "--",
        str(Path(spec_path).resolve()),
    ]


def _port_free(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((address, port))
        except OSError:
            return False
    return True


def run_serve(args: argparse.Namespace) -> int:
    spec = _spec(args.spec)
    runtime = _runtime(spec)  # bundle verified, database migrated and reachable, study registered
    if not 1 <= args.port <= 65535:
        raise UserError(f"--port must be between 1 and 65535, got {args.port}.")
    if not _port_free(args.address, args.port):
        raise UserError(f"port {args.port} on {args.address} is in use; pass another --port.")
    base = f"http://{args.address}:{args.port}/"
    print(f"study {spec.id}: {len(runtime.bundle.trials)} trials, database {runtime.store.masked}")
    print(
        f"participant link (Prolific): {base}?PROLIFIC_PID={{{{%PROLIFIC_PID%}}}}&STUDY_ID={{{{%STUDY_ID%}}}}&SESSION_ID={{{{%SESSION_ID%}}}}"
    )
    if spec.allow_anonymous:
        print(f"anonymous link: {base}")
    if os.environ.get(ADMIN_PASSWORD_ENV):
        print(f"admin page: {base}?page=admin")
    else:
        print(f"admin page: disabled (set {ADMIN_PASSWORD_ENV} to enable {base}?page=admin)")
    env = dict(os.environ, **{SPEC_ENV: str(spec.path)})
    proc = subprocess.Popen(streamlit_command(spec.path, args.address, args.port), env=env)
    try:
        return int(proc.wait())
    except KeyboardInterrupt:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        return 130


# -- simulate -----------------------------------------------------------------------------------------------
def run_simulate(args: argparse.Namespace) -> int:
    from neuroinspect.studies.observers import parse_observers, simulate

    spec = _spec(args.spec)
    observers = parse_observers(args.observer, args.participants)
    runtime = _runtime(spec)
    res = simulate(
        runtime,
        args.participants,
        observers,
        concurrency=args.concurrency,
        seed=args.seed,
        show_progress=not args.no_progress,
    )
    given = sum(r.given for r in res.runs)
    recorded = sum(r.recorded for r in res.runs)
    done = sum(r.completed for r in res.runs)
    print(
        f"{len(res.runs)} simulated participants ({', '.join(f'{observers.count(o)} {o}' for o in dict.fromkeys(observers))}), "
        f"{done} completed; {given} answers given, {recorded} recorded; {res.wall_seconds:.1f} s"
    )
    if res.evidence_mode == "attributes":
        acc = res.classifier_info.get("accuracy", {})
        print(
            "model observer's eyes: attribute classifiers (held-out accuracy "
            + ", ".join(f"{k} {v:.2f}" for k, v in acc.items())
            + ")"
        )
    elif res.evidence_mode == "pixels":
        print("model observer's eyes: 8x8 colour thumbnails (no attribute classifiers for this dataset)")
    table = res.accuracy_table()
    if table:
        print(f"{'observer':<10}{'condition':<20}{'trials':>8}{'accuracy':>10}")
        for o, c, n, a in table:
            print(f"{o:<10}{c:<20}{n:>8}{100 * a:>9.1f}%")
        if spec.n_options:
            print(f"(chance: {100 / spec.n_options:.1f}%)")
    print(
        f"next: neuroinspect study status {args.spec}   /   neuroinspect study export {args.spec} --out responses.csv"
    )
    return 0


# -- status -------------------------------------------------------------------------------------------------
def run_status(args: argparse.Namespace) -> int:
    from neuroinspect.studies.bundle import load_bundle
    from neuroinspect.studies.export import study_status
    from neuroinspect.studies.storage import open_store

    spec = _spec(args.spec)
    bundle = load_bundle(spec, verify=False)
    store = open_store(spec.database_url)
    st = study_status(spec, store)
    print(f"study {spec.id}: {spec.title}")
    print(
        f"bundle: {bundle.path} ({len(bundle.trials)} trials, {len(bundle.main_units)} units, "
        f"conditions {', '.join(spec.condition_names)}; manifest {bundle.hash[:16]})"
    )
    print(f"database: {store.masked}")
    print(
        f"participants: {st['participants']} ({st['simulated']} simulated): {st['complete']} complete, "
        f"{st['in_progress']} in progress, {st['timed_out']} timed out, {st['declined']} declined; "
        f"{st['excluded']} excluded by the rules"
    )
    print(f"responses: {st['responses']}")
    for note in st["exclusion_notes"]:
        print(f"  note: {note}")
    if st["per_condition"]:
        print(f"{'condition':<20}{'responses':>10}{'kept':>8}{'accuracy (kept)':>17}")
        for row in st["per_condition"]:
            acc = "-" if row["accuracy_kept"] is None else f"{100 * row['accuracy_kept']:.1f}%"
            print(f"{row['condition']:<20}{row['responses']:>10}{row['kept']:>8}{acc:>17}")
    if args.participants:
        for row in st["rows"]:
            print(
                f"  {row['participant']:<28} {row['state']:<12} {row['answered']}/{row['trials']}"
                + (f"  excluded: {row['excluded']}" if row["excluded"] else "")
            )
    return 0


# -- export -------------------------------------------------------------------------------------------------
def run_export(args: argparse.Namespace) -> int:
    from neuroinspect.studies.export import write_labels_csv, write_responses_csv

    if not args.out and not args.labels:
        raise UserError("study export needs --out responses.csv and/or --labels labels.csv.")
    spec = _spec(args.spec)
    for target in (args.out, args.labels):
        if target and Path(target).exists() and not args.force:
            raise UserError(f"{target} already exists; pass another file name or --force to replace it.")
    from neuroinspect.studies.storage import open_store

    store = open_store(spec.database_url)
    if args.out:
        path, n = write_responses_csv(spec, args.out, force=args.force, store=store)
        print(f"{n} responses written to {path}")
    if args.labels:
        path, n = write_labels_csv(
            spec,
            args.labels,
            force=args.force,
            conditions=args.condition or None,
            apply_rules=not args.include_excluded,
            store=store,
        )
        print(f"{n} neuron labels written to {path}")
    return 0
