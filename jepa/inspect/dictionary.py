"""A sparse dictionary over embeddings: which few directions each token is built from.

``fit_dictionary(features, atoms=K, active=k)`` learns an overcomplete dictionary of ``K`` unit
atoms ``d_j`` so that every feature vector is approximated by ``k`` of them:

    a = TopK_k(ReLU(W_enc (x - b) + c))          (at most k non-zero, non-negative codes)
    x_hat = b + sum_j a_j d_j

a *top-k sparse autoencoder* (Makhzani & Frey 2013; Gao et al. 2024, "Scaling and evaluating
sparse autoencoders"). Why this one: the sparsity is exactly ``k`` per token, set by the user and
the same for the PCA baseline (``k`` components), instead of the indirect L1 weight of an L1
autoencoder, whose shrinkage also biases every code towards zero; encoding is one matrix product
and a top-k, where ISTA-style sparse coding iterates per token; and it trains with plain Adam on
minibatches of millions of tokens. Dead atoms (never in any top-k for ``dead_after`` steps) are
re-initialised on the worst-reconstructed inputs of the current batch, as dictionary learners
usually do.

Features are centred (``b`` starts at their mean) and scaled to unit mean norm before fitting;
``encode`` / ``decode`` take and return the original units.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class FitLog:
    """How fitting went: the reconstruction R^2 over the steps, and atoms re-initialised."""

    r2: list[float]
    resampled: int


class SparseDictionary(nn.Module):
    """A top-k sparse autoencoder; ``atoms`` unit-norm dictionary rows, ``active`` codes per input."""

    def __init__(self, dim: int, atoms: int, active: int) -> None:
        super().__init__()
        if not 1 <= active <= atoms:
            raise ValueError(f"active must be in 1..atoms ({atoms}), got {active}")
        self.dim, self.atoms, self.active = dim, atoms, active
        self.decoder = nn.Parameter(torch.randn(atoms, dim))  # rows: the atoms
        self.encoder = nn.Parameter(torch.zeros(dim, atoms))
        self.code_bias = nn.Parameter(torch.zeros(atoms))
        self.register_buffer("center", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(()))
        self.normalise_atoms()
        with torch.no_grad():
            self.encoder.copy_(self.decoder.t())

    @torch.no_grad()
    def normalise_atoms(self) -> None:
        self.decoder.div_(self.decoder.norm(dim=1, keepdim=True).clamp_min(1e-8))

    def pre_codes(self, x: torch.Tensor) -> torch.Tensor:
        """Dense non-negative activations before the top-k, ``[M, atoms]`` (scaled inputs)."""
        return torch.relu((x - self.center) / self.scale @ self.encoder + self.code_bias)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Inputs ``[M, D]`` -> sparse codes ``[M, atoms]`` with at most ``active`` non-zeros."""
        pre = self.pre_codes(x)
        top = pre.topk(self.active, dim=1)
        return torch.zeros_like(pre).scatter_(1, top.indices, top.values)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``[M, atoms]`` -> reconstructions ``[M, D]`` in the inputs' units."""
        return (codes @ self.decoder) * self.scale + self.center

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


def r2_score(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """Fraction of variance explained: ``1 - sum |x - x_hat|^2 / sum |x - mean(x)|^2``."""
    x, x_hat = x.double(), x_hat.double()
    total = ((x - x.mean(0)) ** 2).sum()
    return float(1 - ((x - x_hat) ** 2).sum() / total.clamp_min(1e-12))


def fit_dictionary(features: torch.Tensor, atoms: int = 256, active: int = 8, steps: int = 2000,
                   batch_size: int = 1024, lr: float = 1e-3, seed: int = 0, dead_after: int = 200,
                   device: str | torch.device = "cpu") -> tuple[SparseDictionary, FitLog]:
    """Learn a :class:`SparseDictionary` on ``features [M, D]`` (float; any number of tokens)."""
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"features must be [M >= 2, D], got shape {tuple(features.shape)}")
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x_all = features.float()
    model = SparseDictionary(x_all.shape[1], atoms, active)
    with torch.no_grad():
        model.center.copy_(x_all.mean(0))
        model.scale.copy_((x_all - model.center).norm(dim=1).mean().clamp_min(1e-8))
        # start the atoms on random inputs (directions data actually takes), encoder tied
        pick = torch.randint(0, x_all.shape[0], (atoms,), generator=g)
        model.decoder.copy_((x_all[pick] - model.center) / model.scale + 0.01 * torch.randn(atoms, x_all.shape[1], generator=g))
        model.normalise_atoms()
        model.encoder.copy_(model.decoder.t())
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    last_used = torch.zeros(atoms, dtype=torch.long, device=device)
    log = FitLog([], 0)
    for step in range(steps):
        idx = torch.randint(0, x_all.shape[0], (min(batch_size, x_all.shape[0]),), generator=g)
        x = x_all[idx].to(device)
        xs = (x - model.center) / model.scale
        codes = model.encode(x)
        recon = codes @ model.decoder
        loss = ((recon - xs) ** 2).sum(1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():  # keep gradients tangent to the unit sphere of each atom
            proj = (model.decoder.grad * model.decoder).sum(1, keepdim=True)
            model.decoder.grad.sub_(proj * model.decoder)
        opt.step()
        model.normalise_atoms()
        with torch.no_grad():
            last_used[(codes > 0).any(0)] = step
            dead = (step - last_used) >= dead_after
            if dead.any() and step < int(0.8 * steps):  # re-initialise on the worst-explained inputs
                err = ((recon - xs) ** 2).sum(1)
                worst = err.topk(min(int(dead.sum()), err.shape[0])).indices
                ids = dead.nonzero().flatten()[: worst.shape[0]]
                residual = xs[worst] - recon[worst]
                model.decoder[ids] = residual / residual.norm(dim=1, keepdim=True).clamp_min(1e-8)
                model.encoder[:, ids] = model.decoder[ids].t()
                model.code_bias[ids] = 0.0
                last_used[ids] = step
                log.resampled += int(ids.numel())
            if step % max(1, steps // 20) == 0 or step == steps - 1:
                log.r2.append(1 - float(((recon - xs) ** 2).sum() / ((xs - xs.mean(0)) ** 2).sum().clamp_min(1e-12)))
    return model.cpu().eval().requires_grad_(False), log


def encode(dictionary: SparseDictionary, features: torch.Tensor, batch_size: int = 65536) -> torch.Tensor:
    """Sparse codes of ``features [M, D]`` -> ``[M, atoms]`` (batched, no gradient)."""
    with torch.no_grad():
        return torch.cat([dictionary.encode(features[i:i + batch_size].float())
                          for i in range(0, features.shape[0], batch_size)])


def decode(dictionary: SparseDictionary, codes: torch.Tensor) -> torch.Tensor:
    """Reconstructions of codes ``[M, atoms]`` -> ``[M, D]``."""
    with torch.no_grad():
        return dictionary.decode(codes)


def pca_r2(train: torch.Tensor, test: torch.Tensor, components: int) -> float:
    """R^2 on ``test`` of the projection onto the top ``components`` principal directions of
    ``train``: the baseline a dictionary with as many active atoms must beat."""
    mean = train.double().mean(0)
    _, _, v = torch.linalg.svd(train.double() - mean, full_matrices=False)
    basis = v[:components]  # [c, D]
    centred = test.double() - mean
    return r2_score(test, centred @ basis.t() @ basis + mean)
