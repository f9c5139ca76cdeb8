"""Streamlit entry point of the study app: ``streamlit run neuroinspect/studies/app.py -- SPEC.toml``
(``neuroinspect study serve SPEC.toml`` runs exactly that). The pages are in :mod:`neuroinspect.studies.webapp`."""

import neuroinspect  # noqa: F401  (the torchvision fix, before anything imports torchvision)
from neuroinspect.studies.webapp import main

main()
