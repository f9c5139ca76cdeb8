"""Published numbers ("reported" rows) that sit beside the measured ones in the leaderboards.

They ship with the package (``neuroinspect/leaderboards/reported.jsonl``, linked from the
repository's ``leaderboards/reported.jsonl``, so an installed wheel has them too): one result record per
published result, with ``"source": "reported"``, a ``citation``, the publication's settings in
``config`` and honest provenance (versions null, device ``"reported"``, wall seconds 0). See
``leaderboards/README.md`` for how to add one. Where they go (beside a measured table of the same
data, or in a published table of their own) is decided by
:func:`neuroinspect.leaderboards.aggregate.build_tables`.
"""

from __future__ import annotations

import os
from pathlib import Path

from neuroinspect.errors import RecordError, UserError
from neuroinspect.leaderboards.aggregate import LocatedRecord, read_located

#: the published rows shipped with the package (package data)
REPORTED_PATH = Path(__file__).resolve().parent / "reported.jsonl"
ENV_VAR = "NEUROINSPECT_REPORTED"


def default_reported_path() -> Path:
    """``$NEUROINSPECT_REPORTED`` if set, else the rows shipped with the package."""
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else REPORTED_PATH


def load_reported(path: str | Path | None = None) -> list[LocatedRecord]:
    """The reported records of ``path`` (default :func:`default_reported_path`), validated.

    Every record must be marked ``"source": "reported"`` (with a ``citation``, which the record
    validator enforces); a measured record in this file is an error naming the line.
    """
    path = Path(path) if path is not None else default_reported_path()
    if not path.is_file():
        raise UserError(
            f"the reported rows file {path} does not exist. Pass --reported-file PATH (a reported.jsonl), "
            f"set {ENV_VAR}, or build without published numbers with --no-reported."
        )
    records = read_located(path)
    for rec in records:
        if rec.record.get("source") != "reported":
            raise RecordError(
                f"invalid result record ({rec.where}): field 'source' must be \"reported\" in a file of published "
                f"numbers, got {rec.record.get('source')!r}. Move measured records to a results file."
            )
    return records
