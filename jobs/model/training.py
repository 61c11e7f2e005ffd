"""Training the torch tabular model (train_torch): an ensemble of networks, each with AdamW, EMA weights and early stopping.

- Regularised hard, because the target drifts month to month and the network overfits the
  training months within two or three epochs: batch norm, dropout 0.5, AdamW with decoupled
  weight decay 0.1, a short schedule (one warmup epoch, then a cosine to zero over `epochs`
  = 6), and an exponential moving average of the weights (with a warmup of its decay), which
  is what is evaluated and kept. Three members trained from different seeds are averaged
  (`ensemble_size`): one network's holdout ROC AUC moves with the seed alone by about the
  whole gap to the HGB baseline, and the average is both better and steadier
  (bench/bench_training.py measures both families).
- Early stopping by time: the caller passes the validation rows from the end of the training
  window, not a random sample. Rows of the same day share weather and history features, so a
  random split leaks the day into validation and stops late; the model is deployed on the
  days after its window, so the last days are the honest proxy. Each member keeps the weights
  of its best validation log loss epoch (`patience` epochs without improvement stop it); log
  loss, not ROC AUC, because the epoch-to-epoch AUC differences on the validation rows are
  within the AUC's own noise.
- Determinism: seeded (`torch.manual_seed`, numpy), shuffling from a seeded generator,
  `torch.use_deterministic_algorithms(True)` during training (restored after). Same seed,
  same machine, same thread count and same library versions give identical predictions on
  CPU. Caveats: float reductions may differ across CPU thread counts and hardware; on CUDA
  `CUBLAS_WORKSPACE_CONFIG` is set (if unset) before the first cuBLAS call and the
  deterministic mode only warns where an op has no deterministic kernel, and fp16 autocast
  (with a GradScaler) changes results versus CPU, so CPU and GPU models are not bitwise equal.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from jobs.model.labels import check_labels, roc_auc
from jobs.model.network import TabularEnsemble, TabularNet, TorchConfig, pick_device, predict
from jobs.model.preprocessing import FeatureSpec, Preprocessor, resolve_features
from jobs.model.trained import EpochCallback, TrainedModel

log = logging.getLogger("jobs.model")


@contextlib.contextmanager
def _deterministic(seed: int, cuda: bool, num_threads: int | None) -> Iterator[None]:
    """Seeded, deterministic torch for the duration of a training; global state restored after."""
    previous = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
                torch.get_num_threads())
    if cuda:
        # cuBLAS is only reproducible with a fixed workspace; read when cuBLAS starts (first matmul).
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
    if num_threads:
        torch.set_num_threads(num_threads)
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)  # nothing here draws from it; third-party code might
    torch.use_deterministic_algorithms(True, warn_only=cuda)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.set_num_threads(previous[2])


def _ema_with_warmup(decay: float) -> Callable[..., None]:
    """EMA update whose decay ramps up as (1 + n) / (10 + n) to `decay` (as timm's ModelEmaV2 warmup does).

    A fixed decay from the first step keeps the initial random weights in the average for
    hundreds of steps (0.995^200 = 37%); with the ramp, a short run or a small data set
    averages its recent weights instead.
    """
    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], n_averaged: torch.Tensor | int) -> None:
        n = float(n_averaged)
        weight = 1.0 - min(decay, (1.0 + n) / (10.0 + n))
        floats = [(a, c) for a, c in zip(averaged, current) if a.is_floating_point()]
        for a, c in zip(averaged, current):
            if not a.is_floating_point():  # batch norm's num_batches_tracked: the latest count
                a.copy_(c)
        if floats:
            torch._foreach_lerp_([a for a, _ in floats], [c for _, c in floats], weight)
    return update


@dataclass
class _Member:
    net: TabularNet
    history: list[dict[str, float]]
    best_epoch: int
    fit_seconds: float
    samples: int


def _fit_member(config: TorchConfig, seed: int, train: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
                valid: tuple[np.ndarray, np.ndarray, np.ndarray], cardinalities: Sequence[int], numeric: np.ndarray,
                device: torch.device, amp: bool, on_epoch: Callable[[dict[str, float]], None]) -> _Member:
    """One network: AdamW, warmup + cosine, EMA weights, early stopping on the validation rows."""
    torch.manual_seed(seed)
    x_codes, x_numeric, targets = train
    v_codes, v_numeric, y_va = valid
    cuda = device.type == "cuda"
    net = TabularNet(cardinalities, numeric.shape[1], config)
    net.set_bins(numeric)
    net.to(device)
    decay = [p for n, p in net.named_parameters() if p.ndim >= 2 and not n.startswith("embeddings")]
    no_decay = [p for n, p in net.named_parameters() if not (p.ndim >= 2 and not n.startswith("embeddings"))]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=config.lr)
    rows = len(x_codes)
    batch = min(config.batch_size, rows)
    steps_per_epoch = rows // batch  # the remainder is dropped: no 1-row batch for batch norm
    total, warmup = steps_per_epoch * config.epochs, max(1, int(steps_per_epoch * config.warmup_epochs))

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    averaged = (torch.optim.swa_utils.AveragedModel(net, multi_avg_fn=_ema_with_warmup(config.ema_decay),
                                                    use_buffers=True) if config.ema_decay else None)
    evaluated = averaged.module if averaged is not None else net
    loss_fn = nn.BCEWithLogitsLoss()
    generator = torch.Generator(device="cpu").manual_seed(seed)
    amp_dtype = torch.float16 if cuda else torch.bfloat16

    history: list[dict[str, float]] = []
    best_score, best_epoch, best_state, stale, fit_seconds = -math.inf, 0, None, 0, 0.0
    for epoch in range(1, config.epochs + 1):
        net.train()
        t0 = time.perf_counter()
        order = torch.randperm(rows, generator=generator).to(device)
        loss_sum = torch.zeros((), device=device)
        for step in range(steps_per_epoch):
            index = order[step * batch:(step + 1) * batch]
            with torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=amp):
                loss = loss_fn(net(x_codes[index], x_numeric[index]).float(), targets[index])
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            if averaged is not None:
                averaged.update_parameters(net)
            loss_sum += loss.detach()
        train_loss = float(loss_sum) / max(1, steps_per_epoch)  # the .item() also waits for CUDA
        seconds = time.perf_counter() - t0
        fit_seconds += seconds
        p_valid = predict(evaluated, v_codes, v_numeric, device)
        p = np.clip(p_valid, 1e-7, 1 - 1e-7)
        metrics = {"train_loss": train_loss,
                   "valid_loss": float(-np.mean(y_va * np.log(p) + (1 - y_va) * np.log(1 - p))),
                   "valid_auc": roc_auc(y_va, p_valid), "samples_per_s": steps_per_epoch * batch / seconds,
                   "lr": float(optimizer.param_groups[0]["lr"])}
        history.append({"epoch": epoch, **metrics})
        on_epoch(metrics)
        score = metrics["valid_auc"] if config.early_stopping_metric == "valid_auc" else -metrics["valid_loss"]
        if score > best_score:
            best_score, best_epoch, stale = score, epoch, 0
            best_state = {k: v.detach().clone() for k, v in evaluated.state_dict().items()}
        else:
            stale += 1
            if stale >= config.patience:
                break
    assert best_state is not None
    net.load_state_dict(best_state)
    net.eval()
    return _Member(net, history, best_epoch, fit_seconds, len(history) * steps_per_epoch * batch)


def train_torch(
    train: pd.DataFrame,
    y_train: Any,
    valid: pd.DataFrame,
    y_valid: Any,
    *,
    features: FeatureSpec | None = None,
    exclude: Sequence[str] | None = None,
    config: TorchConfig | None = None,
    on_epoch: EpochCallback | None = None,
) -> TrainedModel:
    """Train the torch tabular model; early stopping on `valid` (the last days of the window), best weights kept.

    `features`: the inputs (default: the feature schema's model inputs); `exclude`: names to
    leave out (default `DEFAULT_EXCLUDED_FEATURES` when `features` is not given, none when it is).
    `config.ensemble_size` members are trained one after the other (seeds seed, seed+1, ...).
    `on_epoch(step, {"train_loss", "valid_loss", "valid_auc", "samples_per_s", "lr"})` after
    each epoch of each member, `step` counting epochs from 1 across the members (member 2's
    first epoch follows member 1's last), for the caller's MLflow curves; each `history`
    entry also names its `member` and `epoch` within it.
    """
    config = config or TorchConfig()
    if config.ensemble_size < 1:
        raise ValueError(f"ensemble_size must be >= 1, not {config.ensemble_size}")
    features = resolve_features(features, exclude)
    y_tr, y_va = check_labels(train, y_train, "train"), check_labels(valid, y_valid, "valid")
    device = pick_device(config.use_gpu)
    cuda = device.type == "cuda"
    amp = cuda if config.mixed_precision is None else bool(config.mixed_precision)
    started = time.perf_counter()

    with _deterministic(config.seed, cuda, config.num_threads):
        preprocessor = Preprocessor.fit(train, features, min_category_count=config.min_category_count,
                                        max_categories=config.max_categories)
        codes, numeric = preprocessor.transform(train)
        v_codes, v_numeric = preprocessor.transform(valid)
        tensors = (torch.as_tensor(codes, device=device), torch.as_tensor(numeric, device=device),
                   torch.as_tensor(y_tr, device=device))
        history: list[dict[str, float]] = []

        def report(member: int) -> Callable[[dict[str, float]], None]:
            def record(metrics: dict[str, float]) -> None:
                step = len(history) + 1
                history.append({"step": step, "member": member, "epoch": sum(
                    1 for h in history if h["member"] == member) + 1, **metrics})
                log.info("member %d epoch %d: %s", member, history[-1]["epoch"], metrics)
                if on_epoch is not None:
                    on_epoch(step, dict(metrics))
            return record

        members = [
            _fit_member(config, config.seed + i, tensors, (v_codes, v_numeric, y_va), preprocessor.cardinalities,
                        numeric, device, amp, report(i + 1))
            for i in range(config.ensemble_size)
        ]
        net: nn.Module = members[0].net if len(members) == 1 else TabularEnsemble([m.net for m in members])
        net.eval()
        valid_auc = roc_auc(y_va, predict(net, v_codes, v_numeric, device))

    fit_seconds = sum(m.fit_seconds for m in members)
    return TrainedModel(
        family="torch", preprocessor=preprocessor, estimator=net, config=config.to_json(), history=history,
        device=str(device), samples_per_s=sum(m.samples for m in members) / max(fit_seconds, 1e-9),
        train_seconds=time.perf_counter() - started, best_epoch=max(m.best_epoch for m in members),
        valid_auc=valid_auc,
    )
