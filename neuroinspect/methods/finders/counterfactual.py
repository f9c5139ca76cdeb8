"""NeuroInspect's counterfactual explanation (spec §3) and the vote over its shifts (spec §2.4, §2.5).

For every mistake i of class c (pooled feature f_i ∈ R^D), find an additive shift w_i on the pooled
feature that makes the decision layer predict c:

    w_i ← 0;  SGD(lr 0.01, momentum 0.9)
    repeat: z = W (f_i + w_i) + b
            if argmax z = c: stop                 (checked BEFORE the step: a correct sample takes 0 steps)
            L_i = CE(z, c) + α‖w_i‖₁/D + β‖w_i‖₂/D   (α 0.1, β 0.01)
            step on w_i

Differences from the reference, all deliberate:

- The backbone is frozen, so f_i comes from the feature cache and only w is optimized: no backbone
  forward/backward per step (the reference recomputes it with autograd and lets the model's
  gradients pile up). The mistakes are found on the same features (one transform, spec bug 16).
- Every mistake is optimized at once, as one batch. The batched loss is the SUM of the per-sample
  losses, so the gradient of row i is exactly sample i's gradient; SGD with momentum is applied
  row-wise with torch.optim.SGD's update rule, and a row is frozen at its first flip. The iterates
  are those of running each sample alone (up to float rounding of the batched matmul).
- The number of steps is capped (``max_steps``, 1000); samples still wrong at the cap are reported
  (``never_flipped``), not looped on forever; an empty result is a clear message, not a crash.
- Voting (bug 17): the positive list requires w > 0 (the reference only checks w ≤ 0 for the negative
  list), the negative list requires w < 0, a row votes only if it is not all-zero, the printed lists
  stop after ``top`` *listed* rows (the reference counts skipped ones toward its 30), and the
  denominator of Prec@5 is the number of corrected mistakes (``denominator``). ``ref=True`` restores
  the reference's exact voting, list limit, denominator and the all-class mean for ``imp``.

**Two classes: the lists rank decision weights.** The gradient that moves w_i,
∂L/∂w = −(W[c] − Σ_k p_k W[k]) + (norm terms), does not depend on the feature f_i except through the
probabilities p. With K = 2 it is −(1 − p_c)(W[c] − W[k]) for every mistake, so every shift is
(up to the small L1/L2 terms) parallel to W[c] − W[k] (cosine ≥ 0.99999 on the bundled benchmark),
every mistake votes the same top 5, and both lists are a ranking of decision weights, not of what the
mistakes look like. That is the method, faithfully; ``neuroinspect debug`` prints a one-line notice
on a two-class task, and :mod:`neuroinspect.methods.finders.deficit` (``margin-deficit``) is an
activation-aware alternative that leaves this finder (and ``--ref`` parity) untouched.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from neuroinspect.errors import UserError
from neuroinspect.harness.features import FeatureSet
from neuroinspect.methods.finders.base import Finder, FinderResult, register_finder, select_mistakes
from neuroinspect.runtime import progress

DENOMINATORS = ("corrected", "rows", "mistakes")


@dataclass
class CounterfactualRun:
    """Output of :func:`counterfactual_shifts` for B samples.

    ``shifts``: B×D float32 final shift per sample (frozen at the first flip; zero when no step was
    taken); ``steps``: B int64, the number of SGD steps taken (0 = already classified as the target);
    ``flipped``: B bool, whether the argmax reached the target within ``max_steps`` steps.
    """

    shifts: torch.Tensor
    steps: torch.Tensor
    flipped: torch.Tensor


def counterfactual_shifts(
    decision: nn.Linear,
    features: torch.Tensor,
    target: torch.Tensor | int,
    *,
    alpha: float = 0.1,
    beta: float = 0.01,
    lr: float = 0.01,
    momentum: float = 0.9,
    max_steps: int = 1000,
    device: str | torch.device = "cpu",
    show_progress: bool = False,
    desc: str = "counterfactual",
    cpu_threads: int | None = 1,
) -> CounterfactualRun:
    """Optimize one additive shift per row of ``features`` (B×D) until the decision layer predicts ``target``.

    ``target``: an int or a B-vector of class indices. All rows are optimized together; each stops
    at its own first flip (see the module docstring). Returns a :class:`CounterfactualRun` on CPU.

    ``cpu_threads``: torch intra-op threads while optimizing on the CPU (restored afterwards; ``None``
    leaves the setting alone). Every step is a few dozen tiny ops on B×D tensors, for which thread
    hand-offs cost more than they save: on a busy 2-core machine one thread was 10-100× faster.
    """
    if max_steps < 0:
        raise UserError(f"--max-steps must be >= 0, got {max_steps}.")
    device = torch.device(device)
    W = decision.weight.detach().to(device=device, dtype=torch.float32)
    b = (
        decision.bias.detach().to(device=device, dtype=torch.float32)
        if decision.bias is not None
        else torch.zeros(W.shape[0], device=device)
    )
    f = features.detach().to(device=device, dtype=torch.float32)
    B, D = f.shape
    t = torch.as_tensor(target, dtype=torch.long, device=device)
    t = t.expand(B).clone() if t.ndim == 0 else t.clone()
    if t.shape != (B,):
        raise ValueError(
            f"target must be an int or a vector of {B} class indices, got shape {tuple(t.shape)}"
        )
    out = torch.zeros(B, D, device=device)  # final shifts
    if B == 0:
        return CounterfactualRun(
            shifts=out.cpu(), steps=torch.zeros(0, dtype=torch.long), flipped=torch.zeros(0, dtype=torch.bool)
        )
    steps = torch.full((B,), max_steps, dtype=torch.long, device=device)
    done = torch.zeros(B, dtype=torch.bool, device=device)
    # The still-active rows are kept compacted (rows leave when they flip), so a step without a flip
    # does no gather/scatter: x_a, t_a, w_a, buf_a hold the active rows, idx their original positions.
    idx = torch.arange(B, device=device)
    x_a, t_a = f, t
    w_a = torch.zeros(B, D, device=device, requires_grad=True)
    # momentum buffers (torch SGD: buf ← m·buf + g; the first buf = g)
    buf_a = torch.zeros(B, D, device=device)
    alpha_d, beta_d = alpha / D, beta / D
    bar = progress(range(max_steps + 1), desc=desc, total=max_steps + 1, enabled=show_progress)
    saved_threads = torch.get_num_threads()
    if device.type == "cpu" and cpu_threads is not None:
        torch.set_num_threads(max(1, int(cpu_threads)))
    try:
        with torch.enable_grad():
            for step in bar:
                z = F.linear(x_a + w_a, W, b)
                hit = z.argmax(dim=1) == t_a
                if bool(hit.any()):
                    rows = idx[hit]
                    out[rows] = w_a.detach()[hit]
                    steps[rows] = step
                    done[rows] = True
                    keep = ~hit
                    if not bool(keep.any()):
                        break
                    idx, x_a, t_a, buf_a = idx[keep], x_a[keep], t_a[keep], buf_a[keep]
                    w_a = w_a.detach()[keep].requires_grad_(True)
                    z = F.linear(x_a + w_a, W, b)
                if step == max_steps:
                    break
                # SUM of per-sample losses: d(loss)/d(w_a[i]) is sample i's own gradient.
                loss = (
                    F.cross_entropy(z, t_a, reduction="sum")
                    + alpha_d * torch.linalg.vector_norm(w_a, ord=1, dim=1).sum()
                    + beta_d * torch.linalg.vector_norm(w_a, ord=2, dim=1).sum()
                )
                (grad,) = torch.autograd.grad(loss, w_a)
                with torch.no_grad():
                    buf_a.mul_(momentum).add_(grad)
                    w_a.add_(buf_a, alpha=-lr)
    finally:
        torch.set_num_threads(saved_threads)
    out[idx[~done[idx]]] = w_a.detach()[~done[idx]]  # rows still wrong at the cap keep their last shift
    return CounterfactualRun(shifts=out.cpu(), steps=steps.cpu(), flipped=done.cpu())


# -- voting (spec §2.4) --------------------------------------------------------------------------
@dataclass
class Votes:
    """Result of :func:`vote_topk`.

    ``counts``: D int64, in how many rows the neuron was among the top-k (after the sign rules);
    ``rows``: rows of A (the reference's denominator); ``voting_rows``: rows that were not skipped;
    ``first_seen``: neurons in the order the reference's per-rank dicts would first meet them
    (used to break ties exactly like the reference's stable sort); ``per_row``: the voted neurons of
    each row (an empty list for skipped rows).
    """

    counts: torch.Tensor
    rows: int
    voting_rows: int
    first_seen: list[int]
    per_row: list[list[int]]


def vote_topk(A: torch.Tensor, negative: bool, k: int = 5, ref: bool = False) -> Votes:
    """Top-k votes over the rows of ``A`` (N×D counterfactual shifts), spec §2.4.

    Default (bug 17 fixed): a row votes only if it is not all-zero; the positive list counts the
    top-k entries with w > 0, the negative list the bottom-k entries with w < 0.
    ``ref=True``: the reference's rules: rows with sum(w) = 0 are skipped, the positive list counts
    every top-k entry (no positivity check), the negative list skips entries with w > 0.
    """
    A = A.detach().float().cpu()
    N, D = A.shape
    k = min(int(k), D)
    counts = torch.zeros(D, dtype=torch.long)
    per_rank: list[dict[int, int]] = [{} for _ in range(k)]
    per_row: list[list[int]] = []
    voting = 0
    for row in A:
        skip = bool(row.sum() == 0) if ref else not bool(row.any())
        if skip:
            per_row.append([])
            continue
        voting += 1
        idx = torch.topk(row, k, largest=not negative, sorted=True).indices.tolist()
        voted = []
        for r, n in enumerate(idx):
            v = float(row[n])
            if ref:
                if negative and v > 0:
                    continue
            elif (negative and v >= 0) or (not negative and v <= 0):
                continue
            per_rank[r][n] = per_rank[r].get(n, 0) + 1
            counts[n] += 1
            voted.append(n)
        per_row.append(voted)
    first_seen: list[int] = []
    seen: set[int] = set()
    for rank in per_rank:
        for n in rank:
            if n not in seen:
                seen.add(n)
                first_seen.append(n)
    return Votes(counts=counts, rows=N, voting_rows=voting, first_seen=first_seen, per_row=per_row)


def aggregate_vote(
    votes: Votes,
    denominator: int,
    cut_ratio: float = 3.0,
    ref: bool = False,
    tiebreak: torch.Tensor | None = None,
) -> dict[int, float]:
    """Neurons whose vote share exceeds ``cut_ratio`` percent, highest first: ``{neuron: fraction}``.

    ``fraction = counts[n] / denominator`` (0..1); a neuron is kept iff ``100·fraction > cut_ratio``
    (strictly: a share exactly equal to the cut is dropped, e.g. 1 vote in 4 rows at ``cut_ratio=25``).
    Ties between equal shares: ``ref=True`` keeps the reference's order (a stable sort over first
    appearance: rank-1 votes row by row, then rank-2 votes, ...); otherwise by ``tiebreak``
    (descending, e.g. the mean |shift|) and then by neuron index (ascending).
    """
    if denominator <= 0:
        return {}
    frac = votes.counts.double() / float(denominator)
    if ref:
        cand = [n for n in votes.first_seen if 100.0 * float(frac[n]) > cut_ratio]
        cand.sort(key=lambda n: -float(frac[n]))
    else:
        tb = tiebreak.detach().double().cpu() if tiebreak is not None else torch.zeros_like(frac)
        cand = [int(n) for n in torch.nonzero(100.0 * frac > cut_ratio).flatten().tolist()]
        cand.sort(key=lambda n: (-float(frac[n]), -float(tb[n]), n))
    return {int(n): float(frac[n]) for n in cand}


def build_list(
    ranked: dict[int, float], other: dict[int, float], imp: torch.Tensor, top: int = 30, ref: bool = False
) -> list[dict[str, Any]]:
    """Rows ``{neuron, prec5, imp}`` of one list, skipping neurons that appear in the ``other`` list (§2.5).

    Default: up to ``top`` listed rows. ``ref=True``: the reference stops at enumeration index
    ``top`` counting the skipped entries too (bug 17).
    """
    rows: list[dict[str, Any]] = []
    for r, (n, share) in enumerate(ranked.items()):
        if ref and r >= top:
            break
        if not ref and len(rows) >= top:
            break
        if n in other:
            continue
        rows.append({"neuron": int(n), "prec5": float(share), "imp": float(imp[n])})
    return rows


@register_finder("counterfactual")
class CounterfactualFinder(Finder):
    """NeuroInspect's counterfactual shifts on the pooled feature, voted into insufficient/excessive lists (Prec@5)."""

    score_name = "Prec@5"

    def __init__(
        self,
        *,
        alpha: float = 0.1,
        beta: float = 0.01,
        lr: float = 0.01,
        momentum: float = 0.9,
        max_steps: int = 1000,
        k: int = 5,
        cut_ratio: float = 3.0,
        denominator: str | None = None,
        batch_size: int | None = None,
        cpu_threads: int | None = 1,
        top: int = 30,
        ref: bool = False,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__(top=top, ref=ref, device=device)
        if max_steps < 0:
            raise UserError(f"--max-steps must be >= 0, got {max_steps}.")
        if k < 1:
            raise UserError(f"k (top-k shifts per mistake) must be at least 1, got {k}.")
        denominator = denominator or ("rows" if ref else "corrected")
        if denominator not in DENOMINATORS:
            raise UserError(f"denominator must be one of {', '.join(DENOMINATORS)}, got {denominator!r}.")
        if batch_size is not None and batch_size < 1:
            raise UserError(f"batch_size must be at least 1, got {batch_size}.")
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.lr = float(lr)
        self.momentum = float(momentum)
        self.max_steps = int(max_steps)
        self.k = int(k)
        self.cut_ratio = float(cut_ratio)
        self.denominator = denominator
        self.batch_size = batch_size
        self.cpu_threads = cpu_threads

    def find(
        self,
        decision: nn.Linear,
        features: FeatureSet,
        class_idx: int,
        *,
        seed: int = 0,
        show_progress: bool = True,
    ) -> FinderResult:
        """Counterfactual shifts for every class-c mistake of ``features``, then the two voted lists.

        Deterministic (no randomness; ``seed`` is recorded only). See :class:`Finder.find`.
        """
        t0 = time.perf_counter()
        m = select_mistakes(decision, features, class_idx)
        M, D = m.features.shape
        chunk = self.batch_size or max(M, 1)
        shifts, steps, flipped = [], [], []
        for start in range(0, M, chunk):
            run = counterfactual_shifts(
                decision,
                m.features[start : start + chunk],
                m.class_idx,
                alpha=self.alpha,
                beta=self.beta,
                lr=self.lr,
                momentum=self.momentum,
                max_steps=self.max_steps,
                device=self.device,
                show_progress=show_progress,
                desc=f"counterfactual class {m.class_idx} ({M} mistakes)",
                cpu_threads=self.cpu_threads,
            )
            shifts.append(run.shifts)
            steps.append(run.steps)
            flipped.append(run.flipped)
        S = torch.cat(shifts)
        n_steps = torch.cat(steps)
        did_flip = torch.cat(flipped)
        corrected = did_flip & (n_steps > 0)
        already = did_flip & (n_steps == 0)
        never = ~did_flip
        A = S[corrected]  # one row per corrected mistake (spec §2.3)

        tiebreak = A.abs().mean(dim=0) if A.shape[0] else torch.zeros(D)
        pos = vote_topk(A, negative=False, k=self.k, ref=self.ref)
        neg = vote_topk(A, negative=True, k=self.k, ref=self.ref)
        # "corrected": rows of A that were not skipped (a skipped zero row is not corrected by a shift);
        # "rows": every row of A (the reference); "mistakes": every class-c mistake.
        denom = {"rows": pos.rows, "corrected": pos.voting_rows, "mistakes": M}[self.denominator]
        pos_ranked = aggregate_vote(pos, denom, self.cut_ratio, ref=self.ref, tiebreak=tiebreak)
        neg_ranked = aggregate_vote(neg, denom, self.cut_ratio, ref=self.ref, tiebreak=tiebreak)
        imp, imp_ref = self.imp_for(decision, m)
        insufficient = build_list(pos_ranked, neg_ranked, imp, self.top, self.ref)
        excessive = build_list(neg_ranked, pos_ranked, imp, self.top, self.ref)

        d = float(max(denom, 1))
        ins_scores = pos.counts.double() / d
        exc_scores = neg.counts.double() / d

        samples = []
        row_of = {int(i): r for r, i in enumerate(torch.nonzero(corrected).flatten().tolist())}
        for i in range(M):
            status = (
                "corrected"
                if bool(corrected[i])
                else ("already_correct" if bool(already[i]) else "never_flipped")
            )
            r = row_of.get(i)
            samples.append(
                {
                    "index": int(m.indices[i]),
                    "path": m.paths[i],
                    "stored_pred": int(m.stored_preds[i]),
                    "steps": int(n_steps[i]),
                    "status": status,
                    "top_insufficient": pos.per_row[r] if r is not None else [],
                    "top_excessive": neg.per_row[r] if r is not None else [],
                }
            )
        counts: dict[str, int | None] = {
            "mistakes": M,
            "corrected": int(corrected.sum()),
            "never_flipped": int(never.sum()),
            "already_correct": int(already.sum()),
            "denominator": int(denom),  # Prec@5's denominator: an outcome, kept out of the settings
        }
        return FinderResult(
            method=self.name,
            class_idx=m.class_idx,
            insufficient=insufficient,
            excessive=excessive,
            scores=ins_scores + exc_scores,
            insufficient_scores=ins_scores,
            excessive_scores=exc_scores,
            imp=imp,
            counts=counts,
            never_flipped=[m.paths[i] for i in torch.nonzero(never).flatten().tolist()],
            settings={**self.settings(), "seed": seed},
            split=m.split,
            score_name=self.score_name,
            imp_reference=imp_ref,
            tiebreak=tiebreak,
            samples=samples,
            shifts=S,
            wall_seconds=time.perf_counter() - t0,
        )


__all__ = [
    "CounterfactualFinder",
    "CounterfactualRun",
    "Votes",
    "aggregate_vote",
    "build_list",
    "counterfactual_shifts",
    "vote_topk",
]
