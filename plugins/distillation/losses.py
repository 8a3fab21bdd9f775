"""Distillation losses from the frozen teacher to the pruned student: Hinton KD, attention
transfer, FSP and channel-wise distillation.

Each factory builds an ``nn.Module`` with ``taps`` (module paths it needs; ``None``: the
traversal's defaults; ``()``: logits only) and ``forward(student, teacher) -> scalar`` over two
:class:`prunekit.Outputs`. Losses that compare channels one to one (FSP, CWD) also have
``setup(student, teacher)``: the trainer calls it with one batch's outputs before each
(re)training phase, before building the optimizer, so the 1×1 adapters it creates for taps whose
channel counts pruning made differ are trained with the student. Teacher tensors are detached
and never written to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from prunekit.plugin import ConfigError, Outputs, Spec, field, hookimpl

Pair = tuple[str, torch.Tensor, torch.Tensor]


def tap_pairs(taps: tuple[str, ...] | None, student: Outputs, teacher: Outputs) -> list[Pair]:
    """(path, student feature, detached teacher feature) per tap; ``None`` takes every tap the
    trainer passed, in its order."""
    names = tuple(teacher.features) if taps is None else taps
    missing = [n for n in names if n not in student.features or n not in teacher.features]
    if missing:
        raise ConfigError(
            f"distillation taps {missing} were not recorded; "
            f"recorded: {sorted(set(student.features) & set(teacher.features))}"
        )
    return [(n, student.features[n], teacher.features[n].detach()) for n in names]


def resize_to(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    if tuple(x.shape[2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


@torch.no_grad()
def fitted_adapter(student: torch.Tensor, teacher: torch.Tensor) -> nn.Conv2d:
    """A 1×1 conv initialised to the (ridge) least-squares map from student to teacher features
    on the setup batch.

    Right after pruning the student's channels are a subset of the teacher's at positions this
    loss does not know; the fit recovers that correspondence (identity on the kept channels) and
    predicts the removed ones from the kept, where an identity matrix would pair wrong channels.
    """
    student = resize_to(student, teacher.shape[2:])
    x = student.transpose(0, 1).flatten(1).double()
    x = torch.cat([x, x.new_ones(1, x.shape[1])])  # a constant row fits the bias
    y = teacher.transpose(0, 1).flatten(1).double()
    gram = x @ x.T
    ridge = 1e-6 * gram.diagonal().mean() * torch.eye(len(gram), dtype=gram.dtype, device=gram.device)
    weight = torch.linalg.solve(gram + ridge, x @ y.T).T
    conv = nn.Conv2d(student.shape[1], teacher.shape[1], 1).to(student.device, student.dtype)
    conv.weight.copy_(weight[:, :-1, None, None])
    conv.bias.copy_(weight[:, -1])  # type: ignore[union-attr]  # a Conv2d built with a bias
    return conv


class Adapters(nn.Module):
    """1×1 convs mapping student taps to the teacher's channel counts, one per differing tap."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleDict()

    def fit(self, pairs: list[Pair]) -> None:
        """Create an adapter for each tap whose counts differ; keep one whose counts did not
        change since the last call (it has been trained); drop those whose counts match again."""
        for name, s, t in pairs:
            key, shape = name.replace(".", "/"), (s.shape[1], t.shape[1])
            old = self.convs[key] if key in self.convs else None  # noqa: SIM401 (ModuleDict has no get)
            if shape[0] == shape[1]:
                if old is not None:
                    del self.convs[key]
            elif old is None or (old.in_channels, old.out_channels) != shape:
                self.convs[key] = fitted_adapter(s, t)

    def forward(self, name: str, x: torch.Tensor, channels: int) -> torch.Tensor:
        key = name.replace(".", "/")
        if key in self.convs:
            return self.convs[key](x)
        if x.shape[1] != channels:
            raise ConfigError(
                f"student tap {name!r} has {x.shape[1]} channels, the teacher's "
                f"{channels}: call setup() after pruning to create its adapter"
            )
        return x


class Hinton(nn.Module):
    """Knowledge distillation (Hinton et al. 2015), pixel-wise: KL(softmax(t/T) ‖ softmax(s/T))
    summed over classes, averaged over pixels and batch, times T² — the factor that keeps the
    gradient scale independent of T (section 2 of the paper), applied here, not by the caller."""

    taps: tuple[str, ...] = ()

    def __init__(self, T: float = 4.0) -> None:
        super().__init__()
        self.T = float(T)

    def forward(self, student: Outputs, teacher: Outputs) -> torch.Tensor:
        log_s = F.log_softmax(student.logits / self.T, 1)
        log_t = F.log_softmax(teacher.logits.detach() / self.T, 1)
        return (log_t.exp() * (log_t - log_s)).sum(1).mean() * self.T**2


def attention_map(features: torch.Tensor, p: float, size: Sequence[int]) -> torch.Tensor:
    """Q = mean over channels of |F|^p at the given spatial size, flattened, L2-normalised per
    sample (Zagoruyko & Komodakis 2017)."""
    q = resize_to(features.abs().pow(p).mean(1, keepdim=True), size)
    return F.normalize(q.flatten(1), dim=1)


class Attention(nn.Module):
    """Attention transfer (Zagoruyko & Komodakis 2017): per tap the batch mean of
    ‖Q̂_s − Q̂_t‖₂, averaged over taps. The paper's norm, not its code's mean squared
    difference. Channel counts may differ; the student's map is resized to the teacher's."""

    def __init__(self, p: float = 2, taps: Sequence[str] | None = None) -> None:
        super().__init__()
        self.p = p
        self.taps = None if taps is None else tuple(taps)

    def forward(self, student: Outputs, teacher: Outputs) -> torch.Tensor:
        pairs = tap_pairs(self.taps, student, teacher)
        if not pairs:
            raise ConfigError("attention distillation needs at least one feature tap")
        losses = [
            (attention_map(s, self.p, t.shape[2:]) - attention_map(t, self.p, t.shape[2:])).norm(dim=1).mean()
            for _, s, t in pairs
        ]
        return torch.stack(losses).mean()


def fsp_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """G = (1/(h·w)) Σ_x a(x) b(x)ᵀ, N×C_a×C_b, both maps pooled to the smaller spatial size
    (Yim et al. 2017)."""
    size = (min(a.shape[2], b.shape[2]), min(a.shape[3], b.shape[3]))
    a, b = F.adaptive_avg_pool2d(a, size), F.adaptive_avg_pool2d(b, size)
    return torch.einsum("nihw,njhw->nij", a, b) / (size[0] * size[1])


class FSP(nn.Module):
    """Flow of solution procedure (Yim et al. 2017): for consecutive taps (t1, t2), (t2, t3), …
    the mean squared difference of student and teacher FSP matrices, averaged over pairs.
    Pruned student taps pass through learned 1×1 adapters (see :meth:`setup`) first."""

    def __init__(self, taps: Sequence[str] | None = None) -> None:
        super().__init__()
        self.taps = None if taps is None else tuple(taps)
        if self.taps is not None and len(self.taps) < 2:
            raise ConfigError(f"fsp distillation needs at least two taps, got {list(self.taps)}")
        self.adapters = Adapters()

    def setup(self, student: Outputs, teacher: Outputs) -> None:
        self.adapters.fit(tap_pairs(self.taps, student, teacher))

    def forward(self, student: Outputs, teacher: Outputs) -> torch.Tensor:
        pairs = tap_pairs(self.taps, student, teacher)
        if len(pairs) < 2:
            raise ConfigError(f"fsp distillation needs at least two taps, got {[n for n, _, _ in pairs]}")
        s = [self.adapters(name, x, t.shape[1]) for name, x, t in pairs]
        t = [t for _, _, t in pairs]
        losses = [F.mse_loss(fsp_matrix(s[i], s[i + 1]), fsp_matrix(t[i], t[i + 1])) for i in range(len(s) - 1)]
        return torch.stack(losses).mean()


def channel_divergence(student: torch.Tensor, teacher: torch.Tensor, tau: float) -> torch.Tensor:
    """τ² · KL(φ(teacher) ‖ φ(student)), φ the softmax over the H·W positions of each channel at
    temperature τ, summed over positions and averaged over channels and batch (Shu et al. 2021:
    the paper's τ²/C normalisation; their released code also divides by the batch size)."""
    log_s = F.log_softmax(student.flatten(2) / tau, 2)
    log_t = F.log_softmax(teacher.flatten(2) / tau, 2)
    return (log_t.exp() * (log_t - log_s)).sum(2).mean() * tau**2


class ChannelWise(nn.Module):
    """Channel-wise distillation for dense prediction (Shu et al. 2021) on each tap and, when
    ``logits``, on the logits; the mean of these terms. Pruned student taps pass through learned
    1×1 adapters (see :meth:`setup`); student maps of another size are resized to the teacher's."""

    def __init__(self, tau: float = 4.0, taps: Sequence[str] | None = None, logits: bool = True) -> None:
        super().__init__()
        self.tau = float(tau)
        self.taps = None if taps is None else tuple(taps)
        self.logits = logits
        if self.taps == () and not logits:
            raise ConfigError("cwd distillation with no taps and logits=False has nothing to distil")
        self.adapters = Adapters()

    def setup(self, student: Outputs, teacher: Outputs) -> None:
        self.adapters.fit(tap_pairs(self.taps, student, teacher))

    def forward(self, student: Outputs, teacher: Outputs) -> torch.Tensor:
        terms = [
            channel_divergence(resize_to(self.adapters(name, s, t.shape[1]), t.shape[2:]), t, self.tau)
            for name, s, t in tap_pairs(self.taps, student, teacher)
        ]
        if self.logits:
            terms.append(channel_divergence(student.logits, teacher.logits.detach(), self.tau))
        if not terms:
            raise ConfigError("cwd distillation got no feature taps and logits=False")
        return torch.stack(terms).mean()


@dataclass
class HintonArgs:
    T: float = field(4.0, min=0, open_min=True, doc="temperature")


@dataclass
class AttentionArgs:
    p: float = field(2.0, min=0, open_min=True, doc="power of the attention map")
    taps: list[str] | None = field(None, doc="module paths; default: the traversal's")


@dataclass
class FspArgs:
    taps: list[str] | None = field(None, doc="module paths, at least two; default: the traversal's")


@dataclass
class ChannelWiseArgs:
    tau: float = field(4.0, min=0, open_min=True, doc="temperature")
    taps: list[str] | None = field(None, doc="module paths; default: the traversal's")
    logits: bool = field(True, doc="also distil the logits")


@hookimpl
def prunekit_distillation_losses() -> list[Spec]:
    return [
        Spec("hinton", Hinton, "knowledge distillation on the logits, temperature T (Hinton et al. 2015)", HintonArgs),
        Spec("attention", Attention, "attention transfer on feature taps (Zagoruyko & Komodakis 2017)", AttentionArgs),
        Spec("fsp", FSP, "flow of solution procedure matrices between taps (Yim et al. 2017)", FspArgs),
        Spec("cwd", ChannelWise, "channel-wise distillation for dense prediction (Shu et al. 2021)", ChannelWiseArgs),
    ]
