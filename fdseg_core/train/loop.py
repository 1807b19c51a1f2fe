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

from fdseg_core.train.checkpoint import atomic_save, atomic_write_text, build_model, load_checkpoint
from fdseg_core.train.config import TrainConfig
from fdseg_core.train.distributed import (
    DistInfo,
    all_reduce_mean,
    all_reduce_sum,
    barrier,
    cleanup,
    init_distributed,
)
from fdseg_core.train.logs import MetricsLog, plot_curves
from fdseg_core.train.losses import DiceCELoss
from fdseg_core.train.schedules import build_scheduler

__all__ = ["train", "resolve_device", "split_cases"]

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


def _backbone_provenance(name: str) -> dict[str, str | None]:
    from fdseg_core.plugins import get_backbone

    spec = get_backbone(name)
    return {"name": spec.name, "package": spec.package, "version": spec.version}


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def train(config: TrainConfig, *, resume: bool = False) -> dict[str, Any]:
    """Train the network that ``config`` describes.

    Writes into ``config.out``: ``config.json``, ``splits_final.json``, ``last.pt`` and
    ``best.pt`` (atomically, holding model, optimiser, scheduler, scaler and RNG states,
    the configuration and the backbone's providing package and version),
    ``metrics.jsonl``/``metrics.csv`` and ``curves.png``. Under ``torchrun`` only rank 0
    writes.

    Args:
        config: The run's configuration.
        resume: Continue from ``last.pt`` of ``config.out`` exactly where it stopped.

    Returns:
        A summary dict: ``best_dice``, ``best_epoch``, ``final`` (last validation per
        class), ``report`` (a printable text), ``is_main``.

    Raises:
        ValueError: Bad dataset, configuration or resume state (message names the file).
        FileNotFoundError: Missing dataset files or ``last.pt`` on resume.
    """
    from fdseg_core import data as fdata

    device = resolve_device(config.device)
    dist_info = init_distributed(device)
    if dist_info.enabled and device.type == "cuda":
        device = torch.device("cuda", dist_info.local_rank)
        torch.cuda.set_device(device)
    out = Path(config.out)
    try:
        ckpt = None
        if resume:
            last = out / "last.pt"
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
        elif dist_info.is_main and (out / "last.pt").exists():
            raise FileExistsError(
                f"{out} already holds a training run (last.pt); use --resume to continue it "
                "or choose another --out"
            )

        # ---- options checked in the order a user reads them: dataset, backbone, folds ----
        info = fdata.load_dataset(config.dataset)
        fdata.check_cases(info)
        provenance = _backbone_provenance(config.backbone)
        train_ids, val_ids, plan, new_splits = split_cases(info, config, out)
        if dist_info.is_main:
            if plan.note:
                (logger.warning if plan.optimistic else logger.info)(plan.note)
            out.mkdir(parents=True, exist_ok=True)
            if new_splits is not None:
                fdata.save_splits(new_splits, out / "splits_final.json")
            atomic_write_text(out / "config.json", json.dumps(config.to_dict(), indent=1) + "\n")
        barrier(dist_info)
        by_id = {c.case_id: c for c in info.training}

        normalization = config.normalization or fdata.default_normalization(info)
        prep = fdata.Preprocessor(normalization=normalization, target_spacing=config.target_spacing)
        train_vols = [prep(by_id[i]) for i in train_ids]
        val_vols = [prep(by_id[i]) for i in val_ids]
        num_classes = max(info.labels.values()) + 1
        in_channels = len(info.channel_names)
        class_names = {v: k for k, v in info.labels.items()}

        # ---- model, optimiser, schedule ----
        _seed_everything(config.seed)
        cfg = config.to_dict()
        model = build_model(cfg, in_channels, num_classes).to(device)
        if dist_info.enabled:
            model = nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None
            )
        params = [p for p in model.parameters() if p.requires_grad]
        if config.optimizer == "adamw":
            optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        else:
            optimizer = torch.optim.SGD(
                params, lr=config.lr, momentum=0.99, nesterov=True, weight_decay=config.weight_decay
            )
        total_steps = config.epochs * config.iters_per_epoch
        scheduler = build_scheduler(optimizer, config.schedule, total_steps)
        use_amp = config.amp and device.type == "cuda"
        scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
        loss_fn = DiceCELoss()

        log = MetricsLog(out)
        start_epoch, best_dice, best_epoch = 0, -math.inf, 0
        if ckpt is not None:
            _unwrap(model).load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
            scaler.load_state_dict(ckpt["scaler"])
            start_epoch = int(ckpt["epoch"])
            best_dice, best_epoch = float(ckpt["best_dice"]), int(ckpt["best_epoch"])
            _set_rng_state(ckpt["rng"][min(dist_info.rank, len(ckpt["rng"]) - 1)])
            log = MetricsLog.load(out)
            log.truncate(start_epoch)

        patches = fdata.PatchDataset(
            train_vols,
            patch_size=config.patch_size,
            samples_per_epoch=config.iters_per_epoch * config.batch_size * dist_info.world_size,
            foreground_oversample=config.foreground_oversample,
            augment=True,
            seed=config.seed,
        )
        sampler = None
        if dist_info.enabled:
            sampler = torch.utils.data.distributed.DistributedSampler(
                patches, num_replicas=dist_info.world_size, rank=dist_info.rank, shuffle=False
            )
        loader = torch.utils.data.DataLoader(
            patches,
            batch_size=config.batch_size,
            sampler=sampler,
            shuffle=False,
            num_workers=config.num_workers,
            drop_last=True,
            persistent_workers=False,
            pin_memory=device.type == "cuda",
        )
        writer = _tensorboard(config, out) if dist_info.is_main else None

        from tqdm import tqdm

        show = config.progress and dist_info.is_main
        for epoch in range(start_epoch, config.epochs):
            patches.set_epoch(epoch)
            model.train()
            t0 = time.perf_counter()
            loss_sum = torch.zeros((), device=device)
            bar = tqdm(
                loader,
                total=len(loader),
                disable=not show,
                leave=False,
                desc=f"epoch {epoch + 1}/{config.epochs}",
                dynamic_ncols=True,
            )
            for image, label in bar:
                image = image.to(device, non_blocking=True)
                label = label.to(device, non_blocking=True)
                optimizer.zero_grad(set_to_none=True)
                with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                    logits = model(image)
                    loss = loss_fn(logits, label)
                scaler.scale(loss).backward()
                if config.grad_clip > 0:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(params, config.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                loss_sum += loss.detach()
                bar.set_postfix(loss=f"{loss.item():.4f}")
            train_loss = float(all_reduce_mean(loss_sum / len(loader), dist_info))
            row: dict[str, Any] = {
                "epoch": epoch + 1,
                "train_loss": train_loss,
                "lr": optimizer.param_groups[0]["lr"],
                "epoch_time_s": time.perf_counter() - t0,
                "world_size": dist_info.world_size,
            }
            is_last = epoch + 1 == config.epochs
            if (epoch + 1) % config.val_every == 0 or is_last:
                dice = _validate(model, val_vols, num_classes, config, device, dist_info, show)
                mean_fg = float(np.nanmean(dice[1:])) if num_classes > 1 else float(dice[0])
                for c in range(1, num_classes):
                    row[f"val_dice_{class_names.get(c, c)}"] = float(dice[c])
                row["val_dice_mean"] = mean_fg
                # a NaN mean (no class present in prediction or reference of any
                # validation case) still gives the run a best.pt at its first validation
                score = -1.0 if math.isnan(mean_fg) else mean_fg
                improved = score > best_dice
                if improved:
                    best_dice, best_epoch = score, epoch + 1
            else:
                improved = False
            if show:
                shown = {k: round(v, 4) for k, v in row.items() if k.startswith("val_dice")}
                tqdm.write(f"epoch {epoch + 1}: loss {train_loss:.4f} {shown or ''}")
            rng = _gather_rng(dist_info)
            if dist_info.is_main:
                log.append(row)
                if writer is not None:
                    for key, value in row.items():
                        if key != "epoch":
                            writer.add_scalar(key, value, epoch + 1)
                plot_curves(
                    log.rows,
                    out / "curves.png",
                    title=f"{config.backbone} fusion={config.fusion} beta={config.beta}",
                )
                state = {
                    "format_version": 1,
                    "config": cfg,
                    "epoch": epoch + 1,
                    "model": _unwrap(model).state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "rng": rng,
                    "best_dice": best_dice,
                    "best_epoch": best_epoch,
                    "backbone_package": provenance,
                    "data": {
                        "in_channels": in_channels,
                        "num_classes": num_classes,
                        "labels": dict(info.labels),
                        "channel_names": list(info.channel_names),
                        "normalization": list(normalization),
                        "target_spacing": list(config.target_spacing)
                        if config.target_spacing
                        else None,
                    },
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
        report = _report(config, final, best_dice, best_epoch, out, plan)
        return {
            "best_dice": best_dice,
            "best_epoch": best_epoch,
            "final": final,
            "report": report,
            "is_main": dist_info.is_main,
            "out": str(out),
            "n_folds": plan.n_folds,
            "fold": plan.fold,
        }
    finally:
        cleanup(dist_info)


def split_cases(
    info, config: TrainConfig, out: Path
) -> tuple[list[str], list[str], Any, list[dict] | None]:
    """The training and validation case ids of a run.

    The k-fold split is a property of the dataset, not of the run: it is made with a
    fixed seed (so runs with different seeds, and ``fdseg experiment``, share their
    held-out cases) and kept in ``out/splits_final.json`` (nnU-Net's format), which a
    resumed run reads back. The ``"all"`` fold uses no split file.

    Returns:
        ``(train_ids, val_ids, plan, new_splits)``: ``plan`` is the
        :class:`~fdseg_core.data.FoldPlan`; ``new_splits`` the split to write into
        ``out/splits_final.json`` (``None`` when it exists or is not needed). Nothing
        is written here.

    Raises:
        ValueError: Folds the data cannot honour, a split file with another number of
            folds, or more ``train_cases`` than the fold holds.
    """
    from fdseg_core import data as fdata

    case_ids = [c.case_id for c in info.training]
    plan = fdata.plan_folds(len(case_ids), config.n_folds, config.fold)
    new_splits = None
    if plan.fold == fdata.ALL_FOLD:
        pool, val_ids = sorted(case_ids), sorted(case_ids)
    else:
        split_path = out / "splits_final.json"
        if split_path.is_file():
            splits = fdata.load_splits(split_path)
            if len(splits) != plan.n_folds:
                raise ValueError(
                    f"{split_path} holds {len(splits)} folds but this run uses "
                    f"{plan.n_folds}; use another --out or the same --folds"
                )
        else:
            splits = new_splits = fdata.make_splits(case_ids, n_folds=plan.n_folds, seed=0)
        pool, val_ids = splits[plan.fold]["train"], list(splits[plan.fold]["val"])
    train_ids = fdata.select_subset(pool, config.train_cases, seed=config.seed)
    return train_ids, val_ids, plan, new_splits


def _gather_rng(dist_info: DistInfo) -> list[dict[str, Any]]:
    """RNG states of every rank (rank 0 stores them all in the checkpoint)."""
    state = _rng_state()
    if not dist_info.enabled:
        return [state]
    import torch.distributed as dist

    gathered: list[Any] = [None] * dist_info.world_size
    dist.all_gather_object(gathered, state)
    return gathered


@torch.no_grad()
def _validate(model, val_vols, num_classes, config, device, dist_info, show) -> np.ndarray:
    """Mean Dice per class over the validation cases (full volumes, sliding window)."""
    from fdseg_core.infer import sliding_window_inference
    from fdseg_core.metrics import dice_per_class

    net = _unwrap(model)
    net.eval()
    sums = torch.zeros(num_classes, dtype=torch.float64, device=device)
    counts = torch.zeros(num_classes, dtype=torch.float64, device=device)
    mine = val_vols[dist_info.rank :: dist_info.world_size]
    for vol in mine:
        image = torch.as_tensor(vol.image)[None].to(device)
        probs = sliding_window_inference(
            image, net, config.patch_size, overlap=config.overlap, device=device
        )
        pred = probs.argmax(1)[0].cpu()
        dice = dice_per_class(pred, torch.as_tensor(vol.label), num_classes)
        valid = ~torch.isnan(dice)
        sums += torch.where(valid, dice, torch.zeros_like(dice)).to(device, torch.float64)
        counts += valid.to(device, torch.float64)
    sums = all_reduce_sum(sums, dist_info)
    counts = all_reduce_sum(counts, dist_info)
    model.train()
    return (sums / counts.clamp(min=1)).where(counts > 0, torch.nan).cpu().numpy()


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


def _report(config, final, best_dice, best_epoch, out, plan) -> str:
    split = "fold all" if plan.n_folds is None else f"fold {plan.fold} of {plan.n_folds}"
    lines = [
        f"trained {config.backbone} (fusion={config.fusion}, beta={config.beta}) "
        f"for {config.epochs} epochs, {split} -> {out}"
    ]
    if plan.optimistic:
        lines.append("  (validated on its training cases: the Dice below is optimistic)")
    for key, value in final.items():
        lines.append(f"  validation Dice {key.removeprefix('val_dice_'):>20}: {value:.4f}")
    if best_epoch:
        lines.append(f"  best mean Dice {best_dice:.4f} at epoch {best_epoch} (best.pt)")
    return "\n".join(lines)
