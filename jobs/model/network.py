"""The torch tabular network: its hyperparameters (TorchConfig), its layers, and batched prediction with it.

An MLP over learned embeddings: one embedding per categorical (dimension from the
cardinality, fastai's rule capped at 16) and, per numeric feature, a piecewise-linear
encoding over training quantile bins followed by a per-feature linear layer (Gorishniy et al.
2022, "On Embeddings for Numerical Features in Tabular Deep Learning"); the standardised
numerics also pass through as they are. A plain MLP sees each numeric through one weight and
struggles with the step- and threshold-shaped effects trees find for free (departure hour,
delay rates, humidity); the quantile encoding gives it those shapes. Periodic embeddings are
the other option (`numeric_embedding="periodic"`). An ensemble's logit is the mean of its
members' (`TabularEnsemble`).

Needs torch and numpy only; it travels inside each logged model (jobs/model/pyfunc.py).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, Mapping, Sequence

import numpy as np
import torch
from torch import nn

NumericEmbedding = Literal["ple", "periodic", "none"]
# Rows per forward pass at prediction: small enough that the ensemble's activations stay in
# cache, large enough to amortise the per-call overhead (bench/bench_scoring.py compares chunks).
_PREDICT_BATCH = 8_192
_UNBOUNDED = 1e9


@dataclass
class TorchConfig:
    """Hyperparameters of `train_torch` (the network's shape is rebuilt from these at load)."""

    epochs: int = 6                 # the cosine schedule's length, the most epochs a member trains
    patience: int = 2               # epochs without a better validation score before stopping
    early_stopping_metric: Literal["valid_loss", "valid_auc"] = "valid_loss"
    batch_size: int = 2048
    lr: float = 1e-3
    weight_decay: float = 0.1       # AdamW, decoupled; not on biases, norms and embeddings
    warmup_epochs: float = 1.0
    ema_decay: float | None = 0.995  # exponential moving average of the weights, evaluated and kept (None: off)
    ensemble_size: int = 3          # members from seeds seed, seed+1, ...; their mean logit is the model
    hidden: tuple[int, ...] = (128, 64)
    dropout: float = 0.5
    max_embedding_dim: int = 16
    numeric_embedding: NumericEmbedding = "ple"
    numeric_bins: int = 8           # ple: quantile bins per numeric feature
    numeric_dim: int = 4            # ple/periodic: embedding width per numeric feature
    periodic_frequencies: int = 16  # periodic: frequencies per numeric feature
    periodic_sigma: float = 0.1
    min_category_count: int = 20
    max_categories: int | None = 254
    seed: int = 13
    use_gpu: bool = True            # CUDA when available, else CPU
    mixed_precision: bool | None = None  # None: on CUDA only (fp16 autocast + GradScaler); True also on CPU (bf16)
    num_threads: int | None = None  # CPU threads for torch (None: torch's default)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["hidden"] = list(self.hidden)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "TorchConfig":
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if "hidden" in values:
            values["hidden"] = tuple(values["hidden"])
        return cls(**values)


def embedding_dim(cardinality: int, cap: int) -> int:
    """fastai's rule of thumb, capped: small vocabularies get small embeddings."""
    return int(max(2, min(cap, round(1.6 * cardinality ** 0.56))))


class TabularNet(nn.Module):
    """Categorical embeddings + per-feature numeric embeddings, concatenated, into an MLP with one logit."""

    def __init__(self, cardinalities: Sequence[int], n_numeric: int, config: TorchConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = nn.ModuleList(
            nn.Embedding(c, embedding_dim(c, config.max_embedding_dim)) for c in cardinalities)
        width = sum(e.embedding_dim for e in self.embeddings) + n_numeric  # numerics also pass through as is
        d, bins = config.numeric_dim, config.numeric_bins
        if config.numeric_embedding == "ple":
            self.register_buffer("ple_left", torch.zeros(n_numeric, bins))
            self.register_buffer("ple_width", torch.ones(n_numeric, bins))
            # Clamp bounds, unbounded (a large finite number: inf would turn weight averaging into NaN) below
            # the first bin and above the last.
            self.register_buffer("ple_low", torch.zeros(n_numeric, bins))
            self.register_buffer("ple_high", torch.ones(n_numeric, bins))
            self.register_buffer("ple_mask", torch.zeros(n_numeric, bins))  # 0 on padding bins
            self.numeric_weight = nn.Parameter(torch.randn(n_numeric, bins, d) / math.sqrt(bins))
            self.numeric_bias = nn.Parameter(torch.zeros(n_numeric, d))
            width += n_numeric * d
        elif config.numeric_embedding == "periodic":
            k = config.periodic_frequencies
            self.frequencies = nn.Parameter(torch.randn(n_numeric, k) * config.periodic_sigma)
            self.numeric_weight = nn.Parameter(torch.randn(n_numeric, 2 * k, d) / math.sqrt(2 * k))
            self.numeric_bias = nn.Parameter(torch.zeros(n_numeric, d))
            width += n_numeric * d
        elif config.numeric_embedding != "none":
            raise ValueError(f"numeric_embedding must be ple, periodic or none, not {config.numeric_embedding!r}")
        layers: list[nn.Module] = []
        for size in config.hidden:
            layers += [nn.Linear(width, size), nn.BatchNorm1d(size), nn.ReLU(), nn.Dropout(config.dropout)]
            width = size
        self.mlp = nn.Sequential(*layers)
        self.head = nn.Linear(width, 1)

    @torch.no_grad()
    def set_bins(self, numeric: np.ndarray) -> None:
        """Quantile bin edges of each numeric column of the training matrix (ple only)."""
        if self.config.numeric_embedding != "ple":
            return
        bins = self.config.numeric_bins
        for j in range(numeric.shape[1]):
            edges = np.unique(np.quantile(numeric[:, j], np.linspace(0.0, 1.0, bins + 1)))
            if len(edges) < 2:  # a constant column: one bin of width 1
                edges = np.array([edges[0], edges[0] + 1.0])
            n = len(edges) - 1
            self.ple_left[j].zero_()
            self.ple_width[j].fill_(1.0)
            self.ple_mask[j].zero_()
            self.ple_left[j, :n] = torch.as_tensor(edges[:-1], dtype=torch.float32)
            self.ple_width[j, :n] = torch.as_tensor(np.diff(edges), dtype=torch.float32)
            self.ple_mask[j, :n] = 1.0
            self.ple_low[j].zero_()
            self.ple_high[j].fill_(1.0)
            self.ple_low[j, 0] = -_UNBOUNDED
            self.ple_high[j, n - 1] = _UNBOUNDED

    def forward(self, codes: torch.Tensor, numeric: torch.Tensor) -> torch.Tensor:
        parts = [embedding(codes[:, j]) for j, embedding in enumerate(self.embeddings)]
        parts.append(numeric)
        kind = self.config.numeric_embedding
        if kind == "ple":
            ratio = (numeric.unsqueeze(-1) - self.ple_left) / self.ple_width
            encoded = torch.minimum(torch.maximum(ratio, self.ple_low), self.ple_high) * self.ple_mask
        elif kind == "periodic":
            angles = 2 * math.pi * numeric.unsqueeze(-1) * self.frequencies
            encoded = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)
        if kind != "none":
            embedded = torch.relu(torch.einsum("bnk,nkd->bnd", encoded, self.numeric_weight) + self.numeric_bias)
            parts.append(embedded.flatten(1))
        return self.head(self.mlp(torch.cat(parts, dim=1))).squeeze(-1)


class TabularEnsemble(nn.Module):
    """Members trained alike from different seeds; the logit is their mean (a lower-variance model)."""

    def __init__(self, members: Sequence[TabularNet]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, codes: torch.Tensor, numeric: torch.Tensor) -> torch.Tensor:
        return torch.stack([member(codes, numeric) for member in self.members]).mean(dim=0)


def pick_device(use_gpu: bool) -> torch.device:
    return torch.device("cuda") if use_gpu and torch.cuda.is_available() else torch.device("cpu")


def predict(net: nn.Module, codes: np.ndarray, numeric: np.ndarray, device: torch.device) -> np.ndarray:
    """Sigmoid of the net's logit per row (float64), in forward passes of `_PREDICT_BATCH` rows, in eval mode."""
    net.eval()
    out = np.empty(len(codes), dtype=np.float64)
    with torch.no_grad():
        for start in range(0, len(codes), _PREDICT_BATCH):
            stop = start + _PREDICT_BATCH
            logits = net(torch.as_tensor(codes[start:stop], device=device),
                         torch.as_tensor(numeric[start:stop], device=device))
            out[start:stop] = torch.sigmoid(logits.float()).cpu().numpy()
    return out
