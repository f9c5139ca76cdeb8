"""``neuroinspect study``: human-understanding studies (build, serve, simulate, status, export).

``study analyze`` lives in :mod:`neuroinspect.commands.study_analyze` (``add_arguments`` and ``run``).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from neuroinspect.commands.common import HelpFormatter, add_no_progress, progress_on
from neuroinspect.errors import UserError

ADMIN_PASSWORD_ENV = "NEUROINSPECT_STUDY_ADMIN_PASSWORD"
SPEC_ENV = "NEUROINSPECT_STUDY_SPEC"

SPEC = "configs/studies/shapes-2afc.toml"


def _examples(*lines: str) -> str:
    return "Examples:\n" + "".join(f"  {line}\n" for line in lines)


EXAMPLES = {
    "study": _examples(
        f"neuroinspect study build {SPEC}",
        f"{ADMIN_PASSWORD_ENV}=... neuroinspect study serve {SPEC} --port 8501",
        f"neuroinspect study simulate {SPEC} --participants 50 --concurrency 8",
        f"neuroinspect study status {SPEC}",
        f"neuroinspect study export {SPEC} --out responses.csv",
        f"neuroinspect study analyze {SPEC}",
    ),
    "build": _examples(
        f"neuroinspect study build {SPEC}",
        "neuroinspect study build configs/studies/shapes-labelling.toml --no-progress",
    ),
    "serve": _examples(
        f"{ADMIN_PASSWORD_ENV}=... neuroinspect study serve {SPEC}",
        f"neuroinspect study serve {SPEC} --address 0.0.0.0 --port 8600",
    ),
    "simulate": _examples(
        f"neuroinspect study simulate {SPEC} --participants 50 --concurrency 8",
        f"neuroinspect study simulate {SPEC} --participants 20 --observer model=8,random=1,careless=1",
    ),
    "status": _examples(
        f"neuroinspect study status {SPEC}",
        f"neuroinspect study status {SPEC} --participants",
    ),
    "export": _examples(
        f"neuroinspect study export {SPEC} --out responses.csv",
        f"neuroinspect study export {SPEC} --out responses.csv --overwrite",
        "neuroinspect study export configs/studies/shapes-labelling.toml --labels labels.csv",
    ),
}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "study",
        help="human-understanding study app and its analysis",
        description=(
            "Crowdsourced interpretability studies on the harness's explanations:\n"
            "  build     a TOML spec -> a frozen bundle of trials (images + manifest)\n"
            "  serve     the Streamlit app on a real database (SQLite, or PostgreSQL by URL), Prolific links\n"
            "  simulate  simulated participants through the same session logic and database\n"
            "  status    participants and responses so far\n"
            "  export    one CSV row per response (and a labelling study's labels file)\n"
            "  analyze   statistics, figures and a report from the responses"
        ),
        epilog=EXAMPLES["study"],
        formatter_class=HelpFormatter,
    )
    sub = p.add_subparsers(dest="study_command", metavar="ACTION")

    b = sub.add_parser(
        "build",
        help="train or load the model, run the visualizers, write the frozen bundle",
        description=(
            "Build the study's bundle (PNG images + a manifest with their sha256) deterministically from the\n"
            "spec's seed: train or reuse the model, find the units, run the conditions' visualizers (cached).\n"
            "A second build of the same spec reuses the bundle; a changed spec never overwrites it."
        ),
        epilog=EXAMPLES["build"],
        formatter_class=HelpFormatter,
    )
    b.add_argument("spec", help="study spec (TOML)")
    b.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:N or auto (default: model.device of the spec)"
    )
    add_no_progress(b)
    b.set_defaults(func=run_build)

    s = sub.add_parser(
        "serve",
        help="run the Streamlit app for participants (and the admin page)",
        description=(
            "Serve the built study. Participants open\n"
            "  http://HOST:PORT/?PROLIFIC_PID=...&STUDY_ID=...&SESSION_ID=...\n"
            f"and the admin page is http://HOST:PORT/?page=admin (password from ${ADMIN_PASSWORD_ENV})."
        ),
        epilog=EXAMPLES["serve"],
        formatter_class=HelpFormatter,
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
        description=(
            "Send simulated participants through the study's session logic and database (marked simulated):\n"
            "model observers answer from the images shown, random ones uniformly, careless ones fast and constant."
        ),
        epilog=EXAMPLES["simulate"],
        formatter_class=HelpFormatter,
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
    add_no_progress(m)
    m.set_defaults(func=run_simulate)

    t = sub.add_parser(
        "status",
        help="participants started / complete / excluded, responses per condition",
        description=(
            "Read the study's database: participants started, in progress, complete, timed out, declined and\n"
            "excluded by the spec's [exclusions] rules; responses and accuracy per condition."
        ),
        epilog=EXAMPLES["status"],
        formatter_class=HelpFormatter,
    )
    t.add_argument("spec", help="study spec (TOML)")
    t.add_argument("--participants", action="store_true", help="also list every participant")
    t.set_defaults(func=run_status)

    e = sub.add_parser(
        "export",
        help="the responses as a long-format CSV, or the labels file of a labelling study",
        description=(
            "Write one row per response (the columns of neuroinspect.studies.responses, listed in the README)\n"
            "and/or, for a neuron-labelling study, the labels file the debugging pipeline's `labels` selector\n"
            "reads (neuron,label,class_idx,n_votes,agreement). An existing file is kept unless --overwrite."
        ),
        epilog=EXAMPLES["export"],
        formatter_class=HelpFormatter,
    )
    e.add_argument("spec", help="study spec (TOML)")
    e.add_argument("--out", default=None, metavar="FILE.csv", help="response CSV to write")
    e.add_argument("--labels", default=None, metavar="FILE.csv", help="labels CSV to write")
    e.add_argument(
        "--condition",
        action="append",
        default=[],
        help="labels: count votes under this condition only (repeatable; default: every explanation condition)",
    )
    e.add_argument(
        "--include-excluded", action="store_true", help="labels: keep participants the exclusion rules drop"
    )
    e.add_argument("--overwrite", action="store_true", help="replace an existing --out or --labels file")
    e.set_defaults(func=run_export)

    from neuroinspect.commands import study_analyze

    a = sub.add_parser(
        "analyze",
        help="statistics, figures and a report from the responses",
        formatter_class=HelpFormatter,
    )
    study_analyze.add_arguments(a)  # sets the description and examples
    a.set_defaults(func=study_analyze.run)
    p.set_defaults(func=_no_action(p))
    return p


def _no_action(parser: argparse.ArgumentParser) -> Any:
    def run(args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    return run


def _spec(path: str, *, check_methods: bool = False) -> Any:
    """The spec; its visualizers are checked against the method registry only where they will run
    (``build``): every other action reads a bundle whose manifest must match the spec's hash, and
    importing every visualizer (torch, Lucent, Captum, open_clip) would cost seconds each time."""
    from neuroinspect.studies.spec import load_spec

    return load_spec(path, check_methods=check_methods)


def _runtime(spec: Any, verify: bool = True) -> Any:
    from neuroinspect.studies.bundle import load_bundle
    from neuroinspect.studies.session import StudyRuntime
    from neuroinspect.studies.storage import open_store

    bundle = load_bundle(spec, verify=verify)
    return StudyRuntime(spec, bundle, open_store(spec.database_url))


# -- build --------------------------------------------------------------------------------------------------
def run_build(args: argparse.Namespace) -> int:
    from neuroinspect.outputs import Outputs
    from neuroinspect.studies.bundle import build_bundle

    spec = _spec(args.spec, check_methods=True)
    outputs = Outputs()
    # an existing bundle is reused or refused by build_bundle (it compares the spec); here: can the
    # folder be made at all, before a model is trained for it
    outputs.folder(spec.bundle_dir, f"the bundle folder (`out` in {Path(args.spec).name})", reuse=True)
    with outputs.guard():
        bundle = build_bundle(spec, show_progress=progress_on(args), device=args.device)
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
        show_progress=progress_on(args),
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
    from neuroinspect.outputs import Outputs
    from neuroinspect.studies.export import write_labels_csv, write_responses_csv

    if not args.out and not args.labels:
        raise UserError("study export needs --out responses.csv and/or --labels labels.csv.")
    if args.out and args.labels and Path(args.out).resolve() == Path(args.labels).resolve():
        raise UserError("--out and --labels name the same file; give each its own file name.")
    spec = _spec(args.spec)
    if args.labels and spec.task != "labelling":
        raise UserError(
            f'--labels needs a neuron-labelling study (task = "labelling"); {spec.path.name} is a {spec.task!r} study.'
        )
    outputs = Outputs(overwrite=args.overwrite)
    out = outputs.file(args.out, "--out", example="responses.csv") if args.out else None
    labels = outputs.file(args.labels, "--labels", example="labels.csv") if args.labels else None
    from neuroinspect.studies.storage import open_store

    with outputs.guard():
        store = open_store(spec.database_url)
        if out is not None:
            path, n = write_responses_csv(spec, out, overwrite=args.overwrite, store=store)
            print(f"{n} responses written to {path}")
        if labels is not None:
            path, n = write_labels_csv(
                spec,
                labels,
                overwrite=args.overwrite,
                conditions=args.condition or None,
                apply_rules=not args.include_excluded,
                store=store,
            )
            print(f"{n} neuron labels written to {path}")
    return 0
