# Reference values for neuroinspect's mixed-effects logistic regression (tests/test_study_analysis.py).
#
# Simulates a small within-subject study (30 participants x 3 conditions x 8 trials, units drawn from
# 16) from a logistic model with crossed random intercepts, writes it to glmm_lme4_data.csv, and fits
#   correct ~ condition + (1 | participant) + (1 | unit)
# with lme4::glmer (Laplace approximation, the default) against two reference levels, writing the
# fixed effects, their standard errors (se: from the finite-difference Hessian, lme4's default;
# se_rx: from the penalized least-squares factor RX, i.e. conditional on the variance estimates,
# vcov(use.hessian = FALSE)) and the variance components to glmm_lme4_fit.csv.
#
# Run from tests/data:  Rscript glmm_lme4.R > glmm_lme4.Rout
# (R 4.2.2, lme4 1.1-31 from Debian's r-base-core and r-cran-lme4)
suppressPackageStartupMessages(library(lme4))
set.seed(20260409)
n_part <- 30; n_unit <- 16; n_per <- 8
conds <- c("none", "exemplars", "clip_illusion")
beta <- c(none = 0.4, exemplars = 1.4, clip_illusion = 0.9)
a_part <- rnorm(n_part, 0, 0.7)
a_unit <- rnorm(n_unit, 0, 0.5)
rows <- list()
for (p in seq_len(n_part)) {
  for (c in conds) {
    units <- sample(seq_len(n_unit), n_per)
    eta <- beta[[c]] + a_part[p] + a_unit[units]
    y <- rbinom(n_per, 1, plogis(eta))
    rows[[length(rows) + 1]] <- data.frame(
      participant = sprintf("p%02d", p), condition = c, unit = sprintf("neuron:%d", units), correct = y
    )
  }
}
d <- do.call(rbind, rows)
write.csv(d, "glmm_lme4_data.csv", row.names = FALSE, quote = FALSE)

out <- list()
for (ref in c("none", "exemplars")) {
  d$condition <- relevel(factor(d$condition), ref = ref)
  m <- glmer(correct ~ condition + (1 | participant) + (1 | unit), data = d, family = binomial)
  cf <- summary(m)$coefficients
  vc <- as.data.frame(VarCorr(m))
  terms <- sub("^condition", "", rownames(cf))
  terms[terms == "(Intercept)"] <- "(intercept)"
  out[[length(out) + 1]] <- data.frame(
    reference = ref, term = terms, estimate = cf[, 1], se = cf[, 2],
    se_rx = sqrt(diag(as.matrix(vcov(m, use.hessian = FALSE)))),
    var_participant = vc$vcov[vc$grp == "participant"], var_unit = vc$vcov[vc$grp == "unit"],
    loglik = as.numeric(logLik(m))
  )
  print(summary(m))
}
res <- do.call(rbind, out)
write.csv(res, "glmm_lme4_fit.csv", row.names = FALSE)
print(res, digits = 6)
sessionInfo()
