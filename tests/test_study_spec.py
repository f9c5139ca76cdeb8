"""Study specs: the example specs, the contract the analysis codes against, and one clear error per mistake."""

from __future__ import annotations

from pathlib import Path

import pytest
from _study import write_spec

from neuroinspect.cli import main
from neuroinspect.errors import UserError
from neuroinspect.studies.exclusions import ExclusionRules
from neuroinspect.studies.observers import parse_observers
from neuroinspect.studies.spec import load_spec

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "configs" / "studies").glob("*.toml"))


def test_every_task_type_has_an_example_spec() -> None:
    tasks = {load_spec(p).task for p in EXAMPLES}
    assert tasks == {"2afc", "labelling", "mistake", "rating"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_specs_follow_the_contract(path: Path) -> None:
    spec = load_spec(path)
    assert spec.path == path.resolve() and spec.title and spec.seed == 0
    assert spec.task in ("2afc", "labelling", "mistake", "rating")
    assert spec.n_options == {"2afc": 2, "labelling": 4, "mistake": 2, "rating": None}[spec.task]
    assert isinstance(spec.exclusions, ExclusionRules)
    assert spec.dataset == "spurious-shapes" and spec.model == "resnet18@64px"
    assert spec.database_url.startswith("sqlite:////")  # made absolute, next to the bundle
    names = [c.name for c in spec.conditions]
    baselines = [c.name for c in spec.conditions if c.baseline]
    assert len(set(names)) == len(names)
    assert (
        baselines == ([] if spec.task == "rating" else ["none"]) and spec.baseline == (baselines or [None])[0]
    )
    assert all(c.visualizer for c in spec.conditions if not c.baseline)
    assert spec.out.is_relative_to(Path(__file__).resolve().parent.parent / "runs" / "studies")


def _error(tmp_path: Path, text: str) -> str:
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(UserError) as err:
        load_spec(p)
    return str(err.value)


BASE = """title = "t"
task = "2afc"
[model]
dataset = "spurious-shapes"
[units]
neurons = [1, 2, 3]
[[conditions]]
name = "none"
baseline = true
[[conditions]]
name = "ex"
visualizer = "exemplars"
"""


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda s: s.replace("title =", "titel ="), "unknown key 'titel'. Did you mean 'title'?"),
        (
            lambda s: s.replace("[units]", "[units]\nsampel = 3"),
            "units: unknown key 'sampel'. Did you mean 'sample'?",
        ),
        (
            lambda s: s + '[design]\ntrials_per_condition = "four"\n',
            "design: trials_per_condition must be an integer",
        ),
        (
            lambda s: s + "[design]\ntrials_per_condition = 5\n",
            "design.trials_per_condition = 5 but units.neurons lists only 3",
        ),
        (lambda s: s.replace('task = "2afc"', 'task = "2fac"'), "Did you mean '2afc'?"),
        (
            lambda s: s.replace('visualizer = "exemplars"', 'visualizer = "exemplar"'),
            "Did you mean 'exemplars'?",
        ),
        (
            lambda s: s.replace('visualizer = "exemplars"', 'visualizer = "exemplars"\nsettings = {kk = 3}'),
            "no setting 'kk'. Did you mean 'k'?",
        ),
        (lambda s: s.replace("baseline = true", 'visualizer = "lucent"'), "no baseline"),
        (
            lambda s: s.replace(
                'dataset = "spurious-shapes"', 'dataset = "spurious-shapes"\ncheckpoint = "missing.pt"'
            ),
            "model.checkpoint",
        ),
        (
            lambda s: s.replace('dataset = "spurious-shapes"', 'dataset = "spurious-shape"'),
            "Did you mean 'spurious-shapes'?",
        ),
        (lambda s: s + "[exclusions]\nmin_catch_acc = 0.5\n", "Did you mean 'min_catch_accuracy'?"),
        (lambda s: s + '[completion]\nredirect_url = "ftp://x"\n', "completion.redirect_url"),
        (lambda s: s.replace("neurons = [1, 2, 3]", "neurons = [1, 1, 3]"), "lists a neuron twice"),
        (lambda s: s.replace('name = "ex"', 'name = "none"'), "two conditions are called 'none'"),
        (lambda s: s + "x = = 1\n", "not valid TOML"),
    ],
)
def test_spec_mistakes_get_one_message_naming_the_key(tmp_path: Path, change, expected: str) -> None:  # noqa: ANN001
    assert expected in _error(tmp_path, change(BASE))


def test_mistake_and_rating_specific_checks(tmp_path: Path) -> None:
    mistake = BASE.replace('task = "2afc"', 'task = "mistake"')
    assert "not neurons" in _error(tmp_path, mistake)
    rating = BASE.replace('task = "2afc"', 'task = "rating"') + '[task_options]\nitems = ["clear"]\n'
    assert "unknown item 'clear'" in _error(tmp_path, rating)
    assert "applies to rating studies only" in _error(tmp_path, BASE + '[task_options]\nitems = ["useful"]\n')


def test_cli_reports_a_bad_spec_with_exit_2_and_no_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = tmp_path / "bad.toml"
    p.write_text(BASE.replace("[units]", "[units]\nsampel = 3"))
    for action in ("build", "status", "serve", "simulate", "export"):
        extra = (
            ["--participants", "2"]
            if action == "simulate"
            else (["--out", str(tmp_path / "o.csv")] if action == "export" else [])
        )
        assert main(["study", action, str(p), *extra]) == 2
        err = capsys.readouterr().err
        assert "sampel" in err and "Traceback" not in err
    assert main(["study", "build", str(tmp_path / "nope.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_study_without_an_action_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["study"]) == 2
    out = capsys.readouterr().out
    for action in ("build", "serve", "simulate", "status", "export"):
        assert action in out


def test_relative_paths_are_relative_to_the_spec(tmp_path: Path) -> None:
    p = write_spec(tmp_path / "deep" / "er", "2afc", database_url="sqlite:///db/x.db")
    spec = load_spec(p)
    assert spec.out == (tmp_path / "deep" / "er" / "2afc-study-out").resolve()
    assert spec.database_url == f"sqlite:///{(tmp_path / 'deep' / 'er' / 'db' / 'x.db').resolve()}"
    pg = load_spec(
        write_spec(tmp_path, "2afc", name="pg", database_url="postgresql+psycopg://u@127.0.0.1/db")
    )
    assert pg.database_url == "postgresql+psycopg://u@127.0.0.1/db"


def test_spec_hash_ignores_texts_but_not_the_design(tmp_path: Path) -> None:
    a = load_spec(write_spec(tmp_path, "2afc", name="a"))
    b = load_spec(write_spec(tmp_path, "2afc", name="b", consent="other words", instructions="more words"))
    c = load_spec(write_spec(tmp_path, "2afc", name="c", design="trials_per_condition = 3"))
    assert a.spec_hash() == b.spec_hash() != c.spec_hash()


def test_observer_mixes() -> None:
    assert parse_observers("model", 3) == ["model"] * 3
    mix = parse_observers("model=8,random=1,careless=1", 50)
    assert (mix.count("model"), mix.count("random"), mix.count("careless")) == (40, 5, 5)
    assert len(parse_observers("model=1,careless=1", 7)) == 7
    for bad in ("smart", "model=x", "model=0"):
        with pytest.raises(UserError):
            parse_observers(bad, 5)


def test_export_checks_its_output_files_before_reading_the_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a database nobody can reach: the output checks must answer first, and nothing is written
    spec = write_spec(tmp_path, "labelling", database_url="postgresql+psycopg://u@127.0.0.1:1/nodb")
    blocker = tmp_path / "a-file"
    blocker.write_text("mine")
    out = ["study", "export", str(spec)]
    assert main([*out, "--out", str(blocker / "responses.csv")]) == 2
    assert "a-file is a file" in capsys.readouterr().err
    assert main([*out, "--out", str(blocker)]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--overwrite" in err and blocker.read_text() == "mine"
    assert main([*out, "--labels", str(tmp_path / "new" / "l.csv"), "--out", str(blocker)]) == 2
    assert not (tmp_path / "new").exists()
    # a 2AFC study has no labels file: refused before the responses are written
    afc = write_spec(tmp_path, "2afc", database_url="postgresql+psycopg://u@127.0.0.1:1/nodb")
    assert main(["study", "export", str(afc), "--out", str(tmp_path / "r.csv"), "--labels", "l.csv"]) == 2
    assert "labelling" in capsys.readouterr().err and not (tmp_path / "r.csv").exists()
    # with the files in order, the unreachable database is the one message (no file, no folder left)
    assert main([*out, "--out", str(tmp_path / "out" / "r.csv")]) == 2
    err = capsys.readouterr().err
    assert "127.0.0.1" in err and "Traceback" not in err and not (tmp_path / "out").exists()


def test_study_help_stays_quick() -> None:
    """`neuroinspect study ... --help` builds the study parsers only: no torch, pandas or SQLAlchemy."""
    import subprocess
    import sys

    code = (
        "import sys\nfrom neuroinspect.cli import main\n"
        "for argv in (['study', '--help'], ['study', 'export', '--help'], ['study', 'analyze', '--help']):\n"
        "    try:\n        main(argv)\n    except SystemExit as e:\n        assert e.code == 0, argv\n"
        "print(sorted(m for m in ('torch', 'pandas', 'sqlalchemy', 'streamlit') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
