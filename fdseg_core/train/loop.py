"""The training loop: single process, or DistributedDataParallel under ``torchrun``."""

from __future__ import annotations

import json
import logging
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fdseg_core.data.splits import save_splits
from fdseg_core.train.checkpoint import (
    FORMAT_VERSION,
    atomic_save,
    atomic_write_text,
    build_model,
    load_checkpoint,
)
from fdseg_core.train.config import TrainConfig
from fdseg_core.train.distributed import (
    DistInfo,
    all_reduce_mean,
    barrier,
    cleanup,
    init_distributed,
)
from fdseg_core.train.logs import MetricsLog, plot_curves
from fdseg_core.train.setup import (
    build_optimisation,
    input_shape,
    make_loader,
    prepare_data,
    steps_per_epoch,
)
from fdseg_core.train.steps import train_epoch, validate

__all__ = ["train", "resolve_device"]

logger = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    """``"auto"``: CUDA when available, else the CPU; ``"cuda"`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but no CUDA device is available")
    return torch.device(name)


def _rng_state() -> dict[str, Any]:
    state = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def train(config: TrainConfig, *, resume: bool = False) -> dict[str, Any]:
    """Train the network that ``config`` describes.

    Writes into ``config.out``: ``config.json``, ``splits_final.json``, ``last.pt`` and
    ``best.pt`` (atomically, holding model, optimiser, scheduler, scaler and RNG states,
    the configuration and the backbone's providing package and version),
    ``metrics.jsonl``/``metrics.csv`` and ``curves.png``. Under ``torchrun`` only rank 0
    writes.

    The stages (:mod:`fdseg_core.train.setup`, :mod:`fdseg_core.train.steps`): data
    (dataset, backbone and fold checks, preprocessing), model and optimisation, then
    per epoch the steps, a validation every ``val_every`` epochs (early stopping after
    ``early_stop_patience`` validations without improvement), the log, the curves and
    the checkpoints.

    Args:
        config: The run's configuration.
        resume: Continue from ``last.pt`` of ``config.out`` exactly where it stopped.

    Returns:
        A summary dict: ``best_dice``, ``best_epoch``, ``final`` (last validation per
        class), ``report`` (a printable text), ``is_main``, ``out``, ``n_folds``,
        ``fold``, ``epochs_run``, ``stopped_early``.

    Raises:
        ValueError: Bad dataset, configuration or resume state (message names the file).
        FileNotFoundError: Missing dataset files or ``last.pt`` on resume.
    """
    device = resolve_device(config.device)
    dist_info = init_distributed(device)
    if dist_info.enabled and device.type == "cuda":
        device = torch.device("cuda", dist_info.local_rank)
        torch.cuda.set_device(device)
    out = Path(config.out)
    try:
        ckpt = _resume_checkpoint(config, out, resume, dist_info)
        data = prepare_data(config, out)
        if dist_info.is_main:
            if data.plan.note:
                (logger.warning if data.plan.optimistic else logger.info)(data.plan.note)
            out.mkdir(parents=True, exist_ok=True)
            if data.new_splits is not None:
                save_splits(data.new_splits, out / "splits_final.json")
            atomic_write_text(out / "config.json", json.dumps(config.to_dict(), indent=1) + "\n")
        barrier(dist_info)

        _seed_everything(config.seed)
        cfg = config.to_dict()
        net = build_model(cfg, data.in_channels, data.num_classes).to(device)
        if config.channels_last:
            net = net.to(memory_format=torch.channels_last_3d)
        shape = input_shape(config, data.train_vols, net.size_divisor)
        model: nn.Module = net
        if dist_info.enabled:
            model = nn.parallel.DistributedDataParallel(
                net, device_ids=[device.index] if device.type == "cuda" else None
            )
        if config.compile:
            model = torch.compile(model, mode=config.compile_mode)
        steps = steps_per_epoch(config, len(data.train_vols), dist_info.world_size)
        opt = build_optimisation(config, model, config.epochs * steps, device)
        tracker = _Tracker(config)
        log = MetricsLog(out)
        start_epoch = 0
        if ckpt is not None:
            net.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt)
            start_epoch = int(ckpt["epoch"])
            tracker.load(ckpt)
            _set_rng_state(ckpt["rng"][min(dist_info.rank, len(ckpt["rng"]) - 1)])
            log = MetricsLog.load(out)
            log.truncate(start_epoch)
        samples, loader = make_loader(config, data.train_vols, shape, steps, dist_info, device)
        writer = _tensorboard(config, out) if dist_info.is_main else None
        show = config.progress and dist_info.is_main
        meta = data.meta(config, shape)

        from tqdm import tqdm

        epoch = start_epoch
        while epoch < config.epochs and not tracker.stopped:
            samples.set_epoch(epoch)
            t0 = time.perf_counter()
            loss = train_epoch(
                model,
                opt,
                loader,
                device,
                steps=steps,
                progress=show,
                desc=f"epoch {epoch + 1}/{config.epochs}",
                channels_last=config.channels_last,
            )
            epoch += 1
            row: dict[str, Any] = {
                "epoch": epoch,
                "train_loss": float(all_reduce_mean(loss, dist_info)),
                "lr": opt.optimizer.param_groups[0]["lr"],
                "epoch_time_s": time.perf_counter() - t0,
                "world_size": dist_info.world_size,
            }
            improved = False
            if epoch % config.val_every == 0 or epoch == config.epochs:
                dice = validate(
                    net,
                    data.val_vols,
                    data.num_classes,
                    shape,
                    overlap=config.overlap,
                    device=device,
                    dist_info=dist_info,
                    activation=meta["activation"],
                )
                for c in range(1, data.num_classes):
                    row[f"val_dice_{data.class_names.get(c, c)}"] = float(dice[c])
                mean_fg = float(np.nanmean(dice[1:])) if data.num_classes > 1 else float(dice[0])
                row["val_dice_mean"] = mean_fg
                improved = tracker.update(mean_fg, epoch)
            if show:
                shown = {k: round(v, 4) for k, v in row.items() if k.startswith("val_dice")}
                tqdm.write(f"epoch {epoch}: loss {row['train_loss']:.4f} {shown or ''}")
            rng = _gather_rng(dist_info)
            if dist_info.is_main:
                log.append(row)
                if writer is not None:
                    for key, value in row.items():
                        if key != "epoch":
                            writer.add_scalar(key, value, epoch)
                plot_curves(
                    log.rows,
                    out / "curves.png",
                    title=f"{config.backbone} fusion={config.fusion} beta={config.beta}",
                    loss=config.loss,
                )
                state = {
                    "format_version": FORMAT_VERSION,
                    "config": cfg,
                    "epoch": epoch,
                    "model": net.state_dict(),
                    **opt.state_dict(),
                    "rng": rng,
                    **tracker.state_dict(),
                    "backbone_package": data.provenance,
                    "data": meta,
                    "torch_version": torch.__version__,
                }
                atomic_save(state, out / "last.pt")
                if improved:
                    atomic_save(state, out / "best.pt")
            barrier(dist_info)
        if writer is not None:
            writer.close()
        final = {
            k: v for k, v in (log.rows[-1] if log.rows else {}).items() if k.startswith("val_dice")
        }
        if tracker.stopped and dist_info.is_main:
            logger.info(tracker.stop_message(epoch))
        report = _report(config, final, tracker, out, data.plan, epoch)
        return {
            "best_dice": tracker.best,
            "best_epoch": tracker.best_epoch,
            "final": final,
            "report": report,
            "is_main": dist_info.is_main,
            "out": str(out),
            "n_folds": data.plan.n_folds,
            "fold": data.plan.fold,
            "epochs_run": epoch,
            "stopped_early": tracker.stopped,
        }
    finally:
        cleanup(dist_info)


def _resume_checkpoint(
    config: TrainConfig, out: Path, resume: bool, dist_info: DistInfo
) -> dict | None:
    """The checkpoint to resume from (checked against ``config``), or ``None``.

    Raises:
        FileNotFoundError: ``--resume`` without ``last.pt``.
        ValueError: ``--resume`` with options that differ from the run's.
        FileExistsError: ``out`` holds a run and ``resume`` is false.
    """
    last = out / "last.pt"
    if not resume:
        if dist_info.is_main and last.exists():
            raise FileExistsError(
                f"{out} already holds a training run (last.pt); use --resume to continue it "
                "or choose another --out"
            )
        return None
    if not last.is_file():
        raise FileNotFoundError(f"--resume: {last} does not exist")
    ckpt = load_checkpoint(last, map_location="cpu")
    saved = TrainConfig.from_dict(ckpt["config"])
    if saved.replace(progress=config.progress) != config.replace(progress=config.progress):
        diff = sorted(k for k, v in config.to_dict().items() if saved.to_dict().get(k) != v)
        raise ValueError(
            f"--resume: the options differ from the run in {last} in {diff}; "
            "resume with the same options"
        )
    return ckpt


class _Tracker:
    """The best validation Dice so far, and early stopping on a plateau.

    A validation counts as an improvement when its mean foreground Dice beats the best
    by more than ``early_stop_min_delta`` (the first validation always does; a NaN mean
    counts as -1, so a run still gets a ``best.pt``). After ``early_stop_patience``
    validations in a row without one, and not before ``early_stop_min_epochs``, the
    run stops.
    """

    def __init__(self, config: TrainConfig) -> None:
        self.patience = config.early_stop_patience
        self.min_delta = config.early_stop_min_delta
        self.min_epochs = config.early_stop_min_epochs
        self.best = -math.inf
        self.best_epoch = 0
        self.stale = 0
        self.stopped = False

    def update(self, mean_dice: float, epoch: int) -> bool:
        score = -1.0 if math.isnan(mean_dice) else mean_dice
        if self.best_epoch == 0 or score > self.best + self.min_delta:
            self.best, self.best_epoch, self.stale = score, epoch, 0
            return True
        self.stale += 1
        if self.patience is not None and self.stale >= self.patience and epoch >= self.min_epochs:
            self.stopped = True
        return False

    def stop_message(self, epoch: int) -> str:
        return (
            f"stopped early after epoch {epoch}: {self.stale} validations without an "
            f"improvement of more than {self.min_delta} over the best mean Dice "
            f"{self.best:.4f} (epoch {self.best_epoch})"
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            "best_dice": self.best,
            "best_epoch": self.best_epoch,
            "stale_validations": self.stale,
            "stopped_early": self.stopped,
        }

    def load(self, ckpt: dict) -> None:
        self.best = float(ckpt["best_dice"])
        self.best_epoch = int(ckpt["best_epoch"])
        self.stale = int(ckpt.get("stale_validations", 0))
        self.stopped = bool(ckpt.get("stopped_early", False))


def _gather_rng(dist_info: DistInfo) -> list[dict[str, Any]]:
    """RNG states of every rank (rank 0 stores them all in the checkpoint)."""
    state = _rng_state()
    if not dist_info.enabled:
        return [state]
    import torch.distributed as dist

    gathered: list[Any] = [None] * dist_info.world_size
    dist.all_gather_object(gathered, state)
    return gathered


def _tensorboard(config: TrainConfig, out: Path):
    if not config.tensorboard:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise ValueError(
            "--tensorboard needs the tensorboard package: pip install 'fdseg[tensorboard]'"
        ) from exc
    return SummaryWriter(str(out / "tensorboard"))


def _report(config, final, tracker, out, plan, epochs_run) -> str:
    split = "fold all" if plan.n_folds is None else f"fold {plan.fold} of {plan.n_folds}"
    stop = " (stopped early)" if tracker.stopped else ""
    lines = [
        f"trained {config.backbone} (fusion={config.fusion}, beta={config.beta}) "
        f"for {epochs_run} epochs{stop}, {split} -> {out}"
    ]
    if plan.optimistic:
        lines.append("  (validated on its training cases: the Dice below is optimistic)")
    for key, value in final.items():
        lines.append(f"  validation Dice {key.removeprefix('val_dice_'):>20}: {value:.4f}")
    if tracker.best_epoch:
        lines.append(f"  best mean Dice {tracker.best:.4f} at epoch {tracker.best_epoch} (best.pt)")
    return "\n".join(lines)
