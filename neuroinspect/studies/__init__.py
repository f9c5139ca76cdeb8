"""Human-understanding studies: specs, task types, trial bundles, storage, the Streamlit app,
simulated participants and the statistical analysis (DESIGN.md, "Study app").

The two halves meet in one file format, the long-format response table of
:mod:`neuroinspect.studies.responses` (one row per response), so a study run elsewhere can be
analysed too; exclusion rules live in :mod:`neuroinspect.studies.exclusions` and are shared by the
app's admin page and the analysis.
"""
