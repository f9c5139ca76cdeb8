"""The statistical analysis of a human-understanding study (``neuroinspect study analyze``).

One module per concern:

- :mod:`.design`: task, chance level, conditions and baseline, exclusion rules (from a spec or a CSV)
- :mod:`.accuracy`: accuracy per condition (Wilson, exact binomial, mean ± 2 SEM, bootstrap)
- :mod:`.compare`: paired tests on participant-level scores, Holm
- :mod:`.glmm`: mixed-effects logistic regression with crossed random intercepts (gpboost)
- :mod:`.confidence`, :mod:`.timing`: calibration, response times
- :mod:`.agreement`: error consistency, test-retest, Krippendorff's alpha
- :mod:`.simulate`, :mod:`.power`: the fitted model run forwards; participants a follow-up needs
- :mod:`.pipeline`: all of the above in one pass (:func:`analyze`)
- :mod:`.figures`, :mod:`.report`, :mod:`.records`, :mod:`.outputs`: PNGs, report.md, result records
"""

from neuroinspect.studies.analysis.design import StudyDesign, design_from_spec, design_from_table
from neuroinspect.studies.analysis.pipeline import AnalysisSettings, StudyAnalysis, analyze

__all__ = [
    "AnalysisSettings",
    "StudyAnalysis",
    "StudyDesign",
    "analyze",
    "design_from_spec",
    "design_from_table",
]
