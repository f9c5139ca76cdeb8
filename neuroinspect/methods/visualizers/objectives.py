"""Composable objectives for optimized visualizations (Lucent's ``objectives`` style, spec §4.2).

An :class:`Objective` maps the tensors of one iteration (:class:`ObjectiveInputs`) to one value per
sample, B floats to be **maximized**. Objectives add, subtract, scale by numbers and multiply
sample by sample, so CLIP-Illusion and its ablations are one-line expressions::

    A = neuron_activation() + 0.5 * class_logit()          # activation + γ_cls · class logit
    per_sample = clip_similarity(eps=0.05) * A             # −mean_b (S_b + ε) A_b  (default)
    coupled = clip_similarity(eps=0.05).group_mean() * A.group_mean()   # the reference's B×B loss
    no_clip = A                                            # the use_clip=False ablation

:meth:`Objective.loss` turns values into the scalar that is minimized:
``−Σ_g mean_{b∈g} value_b`` over the groups ``inputs.groups`` (one group per (neuron, class) pair
when many pairs share a batch, so each pair's loss has the same scale as if it ran alone).

The reference multiplies a B×1 activation tensor by a B similarity vector, which broadcasts to B×B:
L = −mean_{i,j} (S_j + ε)·A_i = −(mean_j S_j + ε)·(mean_i A_i) (spec §4.2, bug 11). At B = 1 that
is the intended −(S + ε)·A; at B > 1 the images are coupled through batch means. ``group_mean``
reproduces it exactly (within each group) for parity.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from numbers import Real

import torch


@dataclass
class ObjectiveInputs:
    """The tensors an objective may read at one iteration (B = batch size).

    - ``activations``: B×D pooled activations of the probed layer (the neurons);
    - ``logits``: B×K classifier logits;
    - ``neurons``: B int64, the target neuron of each sample;
    - ``classes``: B int64, the conditioning class of each sample (−1: none);
    - ``groups``: B int64 in 0..G−1, the loss / coupling group of each sample;
    - ``image_emb``: B×E unit CLIP image embeddings, or ``None`` when no term needs CLIP;
    - ``text_emb``: B×E class text embeddings per sample (rows of unconditioned samples unused).
    """

    activations: torch.Tensor
    logits: torch.Tensor
    neurons: torch.Tensor
    classes: torch.Tensor
    groups: torch.Tensor
    image_emb: torch.Tensor | None = None
    text_emb: torch.Tensor | None = None

    @property
    def n_groups(self) -> int:
        return int(self.groups.max().item()) + 1 if self.groups.numel() else 0

    @property
    def has_class(self) -> torch.Tensor:
        return self.classes >= 0


def group_mean(values: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Each sample's value replaced by the mean of its group: B → B (differentiable)."""
    n = int(groups.max().item()) + 1
    sums = torch.zeros(n, dtype=values.dtype, device=values.device).index_add(0, groups, values)
    counts = torch.bincount(groups, minlength=n).to(values.dtype).clamp_min(1)
    return (sums / counts)[groups]


def per_group(values: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Mean value of each group: B → G."""
    n = int(groups.max().item()) + 1
    sums = torch.zeros(n, dtype=values.dtype, device=values.device).index_add(0, groups, values)
    return sums / torch.bincount(groups, minlength=n).to(values.dtype).clamp_min(1)


class Objective:
    """Per-sample values to maximize, ``objective(inputs) -> B``; composable with ``+ - *`` and numbers.

    ``requires`` names the inputs the objective needs beyond the classifier (``{"clip"}`` when a
    CLIP image embedding must be computed), so an objective without CLIP skips CLIP altogether.
    """

    def __init__(
        self, fn: Callable[[ObjectiveInputs], torch.Tensor], name: str, requires: frozenset[str] = frozenset()
    ) -> None:
        self.fn = fn
        self.name = name
        self.requires = frozenset(requires)

    def __call__(self, inputs: ObjectiveInputs) -> torch.Tensor:
        return self.fn(inputs)

    def __repr__(self) -> str:
        return f"Objective({self.name})"

    # -- algebra ----------------------------------------------------------------------------------
    def __add__(self, other: Objective | float) -> Objective:
        if isinstance(other, Objective):
            return Objective(
                lambda i: self(i) + other(i), f"{self.name} + {other.name}", self.requires | other.requires
            )
        if isinstance(other, Real):
            c = float(other)
            return Objective(lambda i: self(i) + c, f"{self.name} + {c:g}", self.requires)
        return NotImplemented

    __radd__ = __add__

    def __neg__(self) -> Objective:
        return Objective(lambda i: -self(i), f"-({self.name})", self.requires)

    def __sub__(self, other: Objective | float) -> Objective:
        return self + (-other)

    def __rsub__(self, other: float) -> Objective:
        return (-self) + other

    def __mul__(self, other: Objective | float) -> Objective:
        if isinstance(other, Objective):
            return Objective(
                lambda i: self(i) * other(i),
                f"({self.name}) * ({other.name})",
                self.requires | other.requires,
            )
        if isinstance(other, Real):
            c = float(other)
            return Objective(lambda i: c * self(i), f"{c:g} * {self.name}", self.requires)
        return NotImplemented

    __rmul__ = __mul__

    def __truediv__(self, other: float) -> Objective:
        if not isinstance(other, Real):
            return NotImplemented
        return self * (1.0 / float(other))

    @staticmethod
    def sum(objectives: list[Objective]) -> Objective:
        out = objectives[0]
        for o in objectives[1:]:
            out = out + o
        return out

    # -- reductions -------------------------------------------------------------------------------
    def group_mean(self) -> Objective:
        """The mean over each sample's group, broadcast back to the group (the reference's coupling)."""
        return Objective(lambda i: group_mean(self(i), i.groups), f"mean[{self.name}]", self.requires)

    def loss(self, inputs: ObjectiveInputs) -> torch.Tensor:
        """The scalar to minimize: −Σ_g mean_{b∈g} value_b."""
        return -per_group(self(inputs), inputs.groups).sum()


# -- terms -----------------------------------------------------------------------------------------
def neuron_activation() -> Objective:
    """a_b = activations[b, neurons[b]], the target neuron's pooled activation."""
    return Objective(lambda i: i.activations.gather(1, i.neurons.view(-1, 1)).squeeze(1), "activation")


def channel(n: int) -> Objective:
    """A fixed channel's pooled activation for every sample (Lucent's ``channel``)."""
    return Objective(lambda i: i.activations[:, n], f"channel[{n}]")


def class_logit() -> Objective:
    """z_b = logits[b, classes[b]] (the raw logit, as in the reference); 0 for unconditioned samples."""

    def fn(i: ObjectiveInputs) -> torch.Tensor:
        z = i.logits.gather(1, i.classes.clamp_min(0).view(-1, 1)).squeeze(1)
        return torch.where(i.has_class, z, torch.zeros_like(z))

    return Objective(fn, "class_logit")


def class_log_prob() -> Objective:
    """log softmax(logits)[b, classes[b]]; 0 for unconditioned samples (an alternative class term)."""

    def fn(i: ObjectiveInputs) -> torch.Tensor:
        lp = torch.log_softmax(i.logits, dim=1).gather(1, i.classes.clamp_min(0).view(-1, 1)).squeeze(1)
        return torch.where(i.has_class, lp, torch.zeros_like(lp))

    return Objective(fn, "class_log_prob")


def clip_similarity(eps: float = 0.0) -> Objective:
    """S_b + ε with S_b = ⟨e_b, t_{c_b}⟩ (unit image embedding, class text embedding).

    Unconditioned samples have no text; their value is 1, the neutral factor of a product.
    """
    eps = float(eps)

    def fn(i: ObjectiveInputs) -> torch.Tensor:
        if i.image_emb is None or i.text_emb is None:
            raise ValueError("clip_similarity needs image_emb and text_emb (the objective requires 'clip')")
        s = (i.image_emb * i.text_emb.to(i.image_emb.dtype)).sum(dim=1) + eps
        return torch.where(i.has_class, s, torch.ones_like(s))

    return Objective(fn, f"clip_sim + {eps:g}" if eps else "clip_sim", frozenset({"clip"}))


def illusion_objective(
    class_gamma: float = 0.5, domain_eps: float = 0.05, use_clip: bool = True, coupled: bool = False
) -> Objective:
    """CLIP-Illusion's class-conditional objective (spec §4.2).

    A = activation + ``class_gamma``·class logit (the logit term is left out when γ = 0).
    ``use_clip``: (S + ε)·A per sample, or with ``coupled`` the reference's (mean S + ε)·(mean A);
    without CLIP: A (the reference's ``wo_clip`` ablation; with γ = 0.1 its ChannelObjective).
    """
    a = neuron_activation()
    if class_gamma:
        a = a + float(class_gamma) * class_logit()
    if not use_clip:
        return a.group_mean() if coupled else a
    if coupled:
        return (clip_similarity().group_mean() + float(domain_eps)) * a.group_mean()
    return clip_similarity(domain_eps) * a


__all__ = [
    "Objective",
    "ObjectiveInputs",
    "channel",
    "class_log_prob",
    "class_logit",
    "clip_similarity",
    "group_mean",
    "illusion_objective",
    "neuron_activation",
    "per_group",
]
