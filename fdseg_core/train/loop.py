"""The training loop: single process, or DistributedDataParallel under ``torchrun``."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from fdseg_core.atomic import atomic_write_text
from fdseg_core.data import PatchDataset
from fdseg_core.data.splits import save_splits
from fdseg_core.errors import (
    InputError,
    MissingExtraError,
    OptionError,
    TrainingDivergedError,
    TrainingInterrupted,
)
from fdseg_core.infer.card import ModelCard
from fdseg_core.infer.sliding_window import InferenceStopped
from fdseg_core.provenance import machine_provenance
from fdseg_core.runlock import RunLock
from fdseg_core.train.callbacks import SELECTION_KEY, EMASelection, TrainingCallback
from fdseg_core.train.checkpoint import (
    FORMAT_VERSION,
    atomic_save,
    load_checkpoint,
)
from fdseg_core.train.config import TrainConfig, differing_run_fields
from fdseg_core.train.distributed import (
    DistInfo,
    all_reduce_mean,
    barrier,
    cleanup,
    init_distributed,
)
from fdseg_core.train.evaluation import mean_foreground, nan_as_worst
from fdseg_core.train.logs import (
    MANY_CLASSES,
    WORST,
    MetricsLog,
    run_log,
    worst_classes,
)
from fdseg_core.train.results import TrainResult
from fdseg_core.train.setup import (
    Optimisation,
    TrainingData,
    check_patch_bands,
    check_patch_fits,
    input_shape,
    make_loader,
    prepare_data,
    resumed_batches,
    steps_per_epoch,
)
from fdseg_core.train.steps import EpochProgress, StepStop, train_epoch
from fdseg_core.train.tracking import MLflowTracking
from fdseg_core.train.trainer import DEFAULT_TRAINER, Trainer, trainer_for

__all__ = ["RunState", "StopRequest", "Tracker", "run_training", "train", "resolve_device"]

logger = logging.getLogger(__name__)


class SummaryWriterLike(Protocol):
    """What the loop needs of TensorBoard's ``SummaryWriter``."""

    def add_scalar(self, tag: str, value: float, step: int) -> Any: ...

    def close(self) -> None: ...


def resolve_device(name: str) -> torch.device:
    """``"auto"``: CUDA when available, else the CPU; ``"cuda"`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("device 'cuda' was requested but no CUDA device is available")
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


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    callbacks: Sequence[TrainingCallback] = (),
    memory_gb: float | None = None,
    trainer: type[Trainer] | None = None,
) -> TrainResult:
    """Train the network that ``config`` describes, with the trainer it names
    (``config.trainer``) or ``trainer``.

    Writes into ``config.out``: ``config.json``, ``splits_final.json``, ``last.pt`` and
    ``best.pt`` (atomically, holding model, optimiser, scheduler, scaler and RNG states,
    the configuration and the backbone's providing package and version),
    ``metrics.jsonl``/``metrics.csv`` and ``curves.png``. Under ``torchrun`` only rank 0
    writes.

    The run is a short sequence of named stages: start the processes, set the run up
    (:func:`_set_up`: resume checkpoint, data, model, optimisation, loader), then per
    epoch the training steps (:func:`_train_epoch`), a validation every ``val_every``
    epochs with early stopping (:func:`_validate_epoch`), the log, curves and
    checkpoints (:func:`_end_epoch`), and the result (:func:`_result`). What the stages
    compute comes from the trainer's methods
    (:class:`~fdseg_core.train.trainer.Trainer`), which a subclass overrides.

    Args:
        config: The run's configuration.
        resume: Continue from ``last.pt`` of ``config.out`` exactly where it stopped.
            The run-defining fields must match the run's; the runtime fields
            (:data:`~fdseg_core.train.config.RUNTIME_FIELDS`) may differ, and so may
            ``epochs``: a larger value extends the run (finished or not), a smaller one
            ends it earlier, and the learning-rate schedule is recomputed over the new
            total from the current step.
        callbacks: Hooks at the stage boundaries
            (:class:`~fdseg_core.train.callbacks.TrainingCallback`); their state is
            saved in the checkpoints. ``config.best_selection="ema"`` adds
            :class:`~fdseg_core.train.callbacks.EMASelection`.
        memory_gb: A budget one training step must fit in (GiB), checked on the network
            before anything is written, beside the device's free memory.
        trainer: A :class:`~fdseg_core.train.trainer.Trainer` subclass to run instead of
            the one ``config.trainer`` names (the run is saved under its name).

    Returns:
        The run's :class:`~fdseg_core.train.results.TrainResult`.

    Raises:
        OptionError: ``config.trainer`` names no trainer.
        ValueError: Bad dataset, configuration or resume state (message names the file).
        FileNotFoundError: Missing dataset files or ``last.pt`` on resume.
        FileExistsError: ``config.out`` holds a run and ``resume`` is false.
        RunLockedError: Another live fdseg process writes into ``config.out``.
        DiskFullError: A checkpoint or log could not be written for lack of space (the
            previous one is intact).
    """
    return run_training(
        trainer_for(config, trainer), resume=resume, callbacks=callbacks, memory_gb=memory_gb
    )


def run_training(
    trainer: Trainer,
    *,
    resume: bool = False,
    callbacks: Sequence[TrainingCallback] = (),
    memory_gb: float | None = None,
) -> TrainResult:
    """The loop of :func:`train`, calling the stages of ``trainer`` (an instance, its
    configuration the run's)."""
    config = trainer.config
    device, dist_info = _start(config)
    # one live run per output folder (rank 0 holds it for every process of the run)
    lock = RunLock(config.out, command="fdseg train") if dist_info.is_main else nullcontext()
    stop = StopRequest()
    try:
        with lock, stop.installed():
            run = _set_up(
                trainer, resume, device, dist_info, _callbacks(config, callbacks), memory_gb
            )
            run.stop = stop
            # every line from here also goes to OUT/train.log (after the checks: a refused
            # run writes nothing)
            with run_log(config.out, enabled=dist_info.is_main):
                _log_start(run)
                run.call("on_train_start")
                while run.epoch < config.epochs and not run.tracker.stopped:
                    run.call("on_epoch_start")
                    row = _train_epoch(run)
                    improved = _validate_epoch(run, row)
                    run.call("on_epoch_end", row)
                    _end_epoch(run, row, improved)
                result = _result(run)
                run.call("on_train_end", result)
                return result
    finally:
        cleanup(dist_info)


class StopRequest:
    """SIGTERM (a scheduler preempting the job) and SIGINT (Ctrl-C) while a run trains:
    the first asks the loop to stop after the current step, save ``last.pt`` there and
    end with the signal's exit code; a second one interrupts at once."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self.signum = 0

    def __call__(self) -> bool:
        return self.signal_name is not None

    def _handle(self, signum, frame) -> None:
        if self.signal_name is not None:  # asked twice: stop now
            raise KeyboardInterrupt
        self.signum = signum
        self.signal_name = signal.Signals(signum).name

    @contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread():
            yield self  # signals reach the main thread only
            return
        previous = {s: signal.signal(s, self._handle) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


@dataclass
class RunState:
    """The state of a run between its stages; what callbacks
    (:class:`~fdseg_core.train.callbacks.TrainingCallback`) see.

    Attributes:
        trainer: The trainer whose stages the loop calls.
        config: The run's configuration.
        device: Where it trains.
        dist_info: This process's place in the job (``is_main``: rank 0).
        data: The cases it trains and validates on.
        net: The network (unwrapped).
        model: What the steps call: ``net``, or its DDP / compiled wrapper.
        opt: Optimiser, schedule, scaler and loss.
        tracker: The best validation and early stopping.
        log: The metrics log (``metrics.jsonl``).
        samples: The training patches of an epoch.
        loader: Their batches.
        steps: Optimiser steps per epoch.
        shape: The spatial shape of a training sample.
        card: The run's model card (the ``data`` section of its checkpoints: what
            inference needs).
        writer: The TensorBoard writer (rank 0 with ``tensorboard``), else ``None``.
        epoch: Epochs done.
        start: The steps of the current epoch done before a resume (a run stopped by a
            signal), ``None`` otherwise.
        stop: Asked after every step: stop there (a signal arrived)?
        callbacks: The callbacks, called at every stage boundary.
        machines: The machines that trained it so far, in order
            (:func:`~fdseg_core.provenance.machine_provenance` of rank 0, with the
            job's ``world_size``); ``{}`` for epochs trained by a version that did not
            record its machine. This process's :attr:`machine` joins them at its first
            checkpoint, so a finished run resumed elsewhere (nothing left to train)
            keeps the machines that trained it.
        machine: This process's machine.
    """

    trainer: Trainer
    config: TrainConfig
    device: torch.device
    dist_info: DistInfo
    data: TrainingData
    net: nn.Module
    model: nn.Module
    opt: Optimisation
    tracker: Tracker
    log: MetricsLog
    samples: PatchDataset
    loader: torch.utils.data.DataLoader
    steps: int
    shape: tuple[int, ...]
    card: ModelCard
    writer: SummaryWriterLike | None
    epoch: int
    start: EpochProgress | None = None
    stop: StopRequest | None = None
    callbacks: tuple[TrainingCallback, ...] = ()
    machines: tuple[dict[str, Any], ...] = ()
    machine: dict[str, Any] = dataclasses.field(default_factory=dict)

    def call(self, hook: str, *args: Any) -> None:
        """Call ``hook`` of every callback, in order."""
        for callback in self.callbacks:
            getattr(callback, hook)(self, *args)

    @property
    def show(self) -> bool:
        """Progress bars: asked for, on rank 0, and a terminal to draw them on (a
        scheduler's log gets plain lines instead)."""
        return self.config.progress and self.dist_info.is_main and sys.stderr.isatty()


def _log_start(run: RunState) -> None:
    """The run's first line: what it trains, from where, for how long."""
    if not run.dist_info.is_main:
        return
    c = run.config
    total = c.epochs * run.steps
    where = f"resuming at epoch {run.epoch + 1}" if run.epoch else "starting"
    logger.info(
        f"{where}: {c.backbone}, fusion {c.fusion}, {len(run.data.train_ids)} training and "
        f"{len(run.data.val_ids)} validation cases, {c.epochs} epochs of {run.steps} steps "
        f"({total} steps), validation every {c.val_every} epoch(s) -> {c.out}"
    )


def _start(config: TrainConfig) -> tuple[torch.device, DistInfo]:
    """The device, and the process group under ``torchrun``."""
    device = resolve_device(config.device)
    dist_info = init_distributed(device)
    if dist_info.enabled and device.type == "cuda":
        device = torch.device("cuda", dist_info.local_rank)
        torch.cuda.set_device(device)
    return device, dist_info


def _callbacks(
    config: TrainConfig, given: Sequence[TrainingCallback]
) -> tuple[TrainingCallback, ...]:
    """The run's callbacks: the ones given, and those its configuration asks for."""
    out = list(given)
    if config.best_selection == "ema" and not any(isinstance(c, EMASelection) for c in out):
        out.append(EMASelection())
    if config.mlflow and not any(isinstance(c, MLflowTracking) for c in out):
        out.append(MLflowTracking(config.mlflow))
    names = [c.name for c in out]
    if len(set(names)) != len(names):
        raise InputError(f"callbacks must have distinct names, got {names}")
    return tuple(out)


def _set_up(
    trainer: Trainer,
    resume: bool,
    device: torch.device,
    dist_info: DistInfo,
    callbacks: tuple[TrainingCallback, ...] = (),
    memory_gb: float | None = None,
) -> RunState:
    """Everything before the first step: the resume checkpoint (checked against the
    config), the data, ``config.json`` and the split, the model and its optimisation,
    restored state on resume, and the loader."""
    config = trainer.config
    out = Path(config.out)
    ckpt = _resume_checkpoint(config, out, resume, dist_info)
    data = prepare_data(config, out)
    _seed_everything(config.seed)
    net = trainer.build_network(data.in_channels, data.num_classes).to(device)
    if config.channels_last:
        net = net.to(memory_format=torch.channels_last_3d)
    shape = input_shape(config, data.train_vols, net.size_divisor)
    check_patch_bands(config, shape, net.size_divisor)
    check_patch_fits(config, shape, net, data.in_channels, device, memory_gb=memory_gb)
    # every check that can refuse the run has passed: only now is anything written
    if dist_info.is_main:
        if data.plan.note:
            (logger.warning if data.plan.optimistic else logger.info)(data.plan.note)
        out.mkdir(parents=True, exist_ok=True)
        if data.new_splits is not None:
            save_splits(data.new_splits, out / "splits_final.json")
        atomic_write_text(out / "config.json", json.dumps(config.to_dict(), indent=1) + "\n")
    barrier(dist_info)
    model: nn.Module = net
    if dist_info.enabled:
        model = nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None
        )
    if config.compile:
        model = torch.compile(model, mode=config.compile_mode)
    steps = steps_per_epoch(config, len(data.train_vols), dist_info.world_size)
    opt = trainer.build_optimisation(model, config.epochs * steps, device)
    tracker = Tracker.from_config(config)
    log = MetricsLog(out)
    epoch = 0
    start = None
    if ckpt is not None:
        epoch = _restore(ckpt, config, net, opt, tracker, steps, dist_info)
        log = MetricsLog.load(out)
        log.truncate(epoch)
        if ckpt.get("epoch_progress"):
            start = EpochProgress(**ckpt["epoch_progress"])
        for callback in callbacks:
            callback.load_state_dict(ckpt.get("callbacks", {}).get(callback.name, {}))
    samples, loader = make_loader(config, data.train_vols, shape, steps, dist_info, device)
    return RunState(
        trainer=trainer,
        config=config,
        device=device,
        dist_info=dist_info,
        data=data,
        net=net,
        model=model,
        opt=opt,
        tracker=tracker,
        log=log,
        samples=samples,
        loader=loader,
        steps=steps,
        shape=shape,
        card=data.card(config, shape, trainer.activation),
        writer=_tensorboard(config, out) if dist_info.is_main else None,
        epoch=epoch,
        start=start,
        callbacks=callbacks,
        # {}: a checkpoint of a version that did not record its machine
        machines=() if ckpt is None else tuple(ckpt.get("machines") or ({},)),
        machine={**machine_provenance(device), "world_size": dist_info.world_size},
    )


def _restore(
    ckpt: dict,
    config: TrainConfig,
    net: nn.Module,
    opt: Optimisation,
    tracker: Tracker,
    steps: int,
    dist_info: DistInfo,
) -> int:
    """Load a resume checkpoint's states; return the epochs it has done.

    When ``config.epochs`` differs from the run's, the learning rate of the current step
    is recomputed on the schedule over the new total, and one line says so.
    """
    net.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt)
    epoch = int(ckpt["epoch"])
    tracker.load(ckpt)
    _set_rng_state(ckpt["rng"][min(dist_info.rank, len(ckpt["rng"]) - 1)])
    before = int(ckpt["config"]["epochs"])
    if before != config.epochs:
        _reschedule(opt)
        if dist_info.is_main:
            logger.info(_epochs_message(before, config.epochs, epoch, steps, tracker))
    return epoch


def _reschedule(opt: Optimisation) -> None:
    """Set the current learning rate from the (new) schedule at the current step."""
    sched = opt.scheduler
    lrs = [
        base * factor(sched.last_epoch)
        for base, factor in zip(sched.base_lrs, sched.lr_lambdas, strict=True)
    ]
    for group, lr in zip(opt.optimizer.param_groups, lrs, strict=True):
        group["lr"] = lr
    sched._last_lr = lrs  # what get_last_lr() reports (torch keeps it in this attribute)


def _epochs_message(before: int, after: int, done: int, steps: int, tracker: Tracker) -> str:
    if tracker.stopped:
        return (
            f"epochs {after} instead of {before}: the run stopped early at epoch {done} "
            "(a validation plateau) and stays stopped"
        )
    if done >= after:
        return (
            f"epochs {after} instead of {before}: the run has done {done} epochs, so it is finished"
        )
    verb = "extending" if after > before else "ending"
    return (
        f"epochs {after} instead of {before}: {verb} the run at epoch {done}; the "
        f"learning-rate schedule is recomputed over {after * steps} steps from step "
        f"{done * steps}"
    )


def _train_epoch(run: RunState) -> dict[str, Any]:
    """One epoch of optimiser steps; the log row of its loss, rate and time.

    A run resumed in the middle of an epoch starts at the step it stopped at. A loss
    that is not finite stops the run at that step (:class:`TrainingDivergedError`); a
    signal stops it after the current step, with ``last.pt`` saved there
    (:class:`TrainingInterrupted`).
    """
    config, dist_info = run.config, run.dist_info
    run.samples.set_epoch(run.epoch)
    start, run.start = run.start, None
    batches = resumed_batches(run.loader, start.done if start else 0)
    t0 = time.perf_counter()
    try:
        loss = train_epoch(
            run.model,
            run.opt,
            batches,
            run.device,
            steps=run.steps,
            progress=run.show,
            desc=f"epoch {run.epoch + 1}/{config.epochs}",
            channels_last=config.channels_last,
            start=start,
            should_stop=run.stop,
            dist_info=dist_info,
            step=run.trainer.train_step,
        )
    except StepStop as stop:
        if stop.reason == "diverged":
            raise _diverged(run, stop) from None
        stop.progress.elapsed_s = _elapsed(start, t0)
        raise _interrupted(run, stop.progress) from None
    run.epoch += 1
    return {
        "epoch": run.epoch,
        "train_loss": float(all_reduce_mean(loss, dist_info)),
        "lr": run.opt.optimizer.param_groups[0]["lr"],
        "epoch_time_s": _elapsed(start, t0),
        "world_size": dist_info.world_size,
        # this process's own loss sum: what a stop in the validation saves
        "_loss_sum": float(loss) * run.steps,
    }


def _elapsed(start: EpochProgress | None, t0: float) -> float:
    """Seconds of the epoch's steps, those before a resume included."""
    return time.perf_counter() - t0 + (start.elapsed_s if start else 0.0)


def _diverged(run: RunState, stop: StepStop) -> TrainingDivergedError:
    """The error of a loss that is not finite; nothing of this step is saved."""
    step = run.epoch * run.steps + stop.progress.done + 1
    kept = (
        f"last.pt (epoch {run.epoch}) and best.pt are the last finite checkpoints"
        if run.epoch
        else "no checkpoint was written (it diverged in the first epoch)"
    )
    amp = " or mixed precision overflowing ({amp})" if run.opt.use_amp else ""
    return TrainingDivergedError(
        f"the training loss was {stop.loss} at step {step} (epoch {run.epoch + 1}): the run "
        f"stopped there; {kept}. Likely causes: a learning rate too high ({{lr}} "
        f"{run.config.lr:g}){amp}, or a loss that does not suit the labels",
        "lr",
        "amp",
        step=step,
    )


def _interrupted(run: RunState, progress: EpochProgress) -> TrainingInterrupted:
    """Save ``last.pt`` at the current step (atomically) and say how to continue.

    ``progress.done`` equal to the epoch's steps is a stop in the epoch's validation:
    the checkpoint then holds the epoch as not yet ended, and the resumed run validates
    it again before it goes on."""
    _save(run, improved=False, epoch_progress=dataclasses.asdict(progress))
    step = run.epoch * run.steps + progress.done
    name = run.stop.signal_name
    where = (
        f"in the validation after step {step} (epoch {run.epoch + 1}); the resumed run "
        "validates again"
        if progress.done == run.steps
        else f"after step {step} (epoch {run.epoch + 1}, step {progress.done} of {run.steps})"
    )
    return TrainingInterrupted(
        f"{name}: stopped {where} and saved {Path(run.config.out) / 'last.pt'}; "
        "run again with {resume} to continue from that step",
        "resume",
        signal_name=name,
        exit_code=128 + run.stop.signum,
        step=step,
    )


def _validate_epoch(run: RunState, row: dict[str, Any]) -> bool:
    """Validate every ``val_every`` epochs and after the last: the Dice per class and
    the time it took (``val_time_s``) go into ``row``, the mean into the early-stopping
    tracker. Returns whether it improved."""
    config, data = run.config, run.data
    loss_sum = row.pop("_loss_sum")
    if not (run.epoch % config.val_every == 0 or run.epoch == config.epochs):
        return False
    t0 = time.perf_counter()
    on_case = _validation_lines(run, len(data.val_vols))
    try:
        if run.stop():  # a signal during the epoch's last step: do not start validating
            raise InferenceStopped
        dice = run.trainer.validate(
            run.net,
            data.val_vols,
            data.num_classes,
            run.shape,
            overlap=config.overlap,
            device=run.device,
            dist_info=run.dist_info,
            activation=run.card.activation,
            # windows are batched as training batches patches: a size known to fit
            batch_size=config.batch_size,
            should_stop=run.stop,
            on_case=on_case,
            target_spacing=config.target_spacing,
        )
    except InferenceStopped:
        # the epoch's steps are done, its validation is not: save it as unfinished, so
        # that the resumed run validates it and ends it as an uninterrupted one does
        run.epoch -= 1
        progress = EpochProgress(run.steps, loss_sum, row["epoch_time_s"])
        raise _interrupted(run, progress) from None
    row["val_time_s"] = time.perf_counter() - t0
    for c in range(1, data.num_classes):
        row[f"val_dice_{data.class_names.get(c, c)}"] = float(dice[c])
    row["val_dice_mean"] = mean_foreground(dice)
    run.call("on_validation_end", row)
    return run.tracker.update(row.get(SELECTION_KEY, row["val_dice_mean"]), run.epoch)


#: Without progress bars, a long validation says how far it is at most this often.
VALIDATION_LINE_S = 30.0


def _validation_lines(run: RunState, n_cases: int) -> Callable[[int], None] | None:
    """What reports a validation's progress: a bar over its cases on a terminal, else a
    line at its start and one every :data:`VALIDATION_LINE_S` seconds (its end is the
    epoch's line). ``None`` on processes other than rank 0."""
    if not run.dist_info.is_main:
        return None
    if run.show:
        bar = tqdm(total=n_cases, leave=False, desc=f"validation {run.epoch}", unit="case")

        def advance(done: int) -> None:
            bar.update(done - bar.n)
            if done >= n_cases:
                bar.close()

        return advance
    logger.info(f"epoch {run.epoch}: validating on {n_cases} cases")
    t0 = last = time.perf_counter()

    def line(done: int) -> None:
        nonlocal last
        now = time.perf_counter()
        if now - last >= VALIDATION_LINE_S and done < n_cases:
            last = now
            elapsed = f"{now - t0:.0f} s"
            logger.info(f"epoch {run.epoch}: validated {done} of {n_cases} cases ({elapsed})")

    return line


def _epoch_line(run: RunState, row: dict[str, Any], improved: bool) -> str:
    """``epoch 3/50 (step 150): loss 0.1234, lr 1.0e-03, 12.3 s; validation 2.1 s: Dice
    red 0.8512, ..., mean 0.8401 (best)``."""
    text = (
        f"epoch {run.epoch}/{run.config.epochs} (step {run.epoch * run.steps}): loss "
        f"{row['train_loss']:.4f}, lr {row['lr']:.2e}, {row['epoch_time_s']:.1f} s"
    )
    if "val_dice_mean" in row:
        classes = {
            k: v for k, v in row.items() if k.startswith("val_dice_") and k != "val_dice_mean"
        }
        if len(classes) > MANY_CLASSES:  # the worst only: a line stays a line
            shown = {k: classes[k] for k in worst_classes(classes, WORST)}
            dice = "worst " + ", ".join(
                f"{k.removeprefix('val_dice_')} {v:.4f}" for k, v in shown.items()
            )
        else:
            dice = ", ".join(f"{k.removeprefix('val_dice_')} {v:.4f}" for k, v in classes.items())
        text += (
            f"; validation {row['val_time_s']:.1f} s: Dice {dice}, mean "
            f"{row['val_dice_mean']:.4f}" + (" (best)" if improved else "")
        )
    return text


def _end_epoch(run: RunState, row: dict[str, Any], improved: bool) -> None:
    """The epoch's line, log row, TensorBoard scalars, curves and checkpoints."""
    config = run.config
    if run.dist_info.is_main:
        logger.info(_epoch_line(run, row, improved))
    if run.dist_info.is_main:
        out = Path(config.out)
        run.log.append(row)
        if run.writer is not None:
            for key, value in row.items():
                if key != "epoch":
                    run.writer.add_scalar(key, value, run.epoch)
        run.trainer.write_curves(run.log.rows, out / "curves.png")
    _save(run, improved=improved)


def _save(run: RunState, *, improved: bool, epoch_progress: dict | None = None) -> None:
    """``last.pt`` (and ``best.pt`` when ``improved``), atomically, by rank 0; every rank
    gives its RNG state. ``epoch_progress``: the steps done in an unfinished epoch."""
    rng = _gather_rng(run.dist_info)
    if not run.machines or run.machines[-1] != run.machine:  # this machine trained it too
        run.machines = (*run.machines, run.machine)
    if run.dist_info.is_main:
        out = Path(run.config.out)
        state = {
            "format_version": FORMAT_VERSION,
            "config": run.config.to_dict(),
            "epoch": run.epoch,
            "epoch_progress": epoch_progress,
            "model": run.net.state_dict(),
            **run.opt.state_dict(),
            "rng": rng,
            **run.tracker.state_dict(),
            "callbacks": {c.name: c.state_dict() for c in run.callbacks},
            "backbone_package": run.data.provenance,
            "data": run.card.to_dict(),
            "torch_version": torch.__version__,
            "machines": list(run.machines),
        }
        atomic_save(state, out / "last.pt")
        if improved:
            atomic_save(state, out / "best.pt")
    barrier(run.dist_info)


def _result(run: RunState) -> TrainResult:
    if run.writer is not None:
        run.writer.close()
    rows = run.log.rows
    final = {k: v for k, v in (rows[-1] if rows else {}).items() if k.startswith("val_dice")}
    if run.tracker.stopped and run.dist_info.is_main:
        logger.info(run.tracker.stop_message(run.epoch))
    plan = run.data.plan
    return TrainResult(
        out=run.config.out,
        best_dice=run.tracker.best,
        best_epoch=run.tracker.best_epoch,
        final=final,
        report=_report(run.config, final, run.tracker, Path(run.config.out), plan, run.epoch),
        is_main=run.dist_info.is_main,
        n_folds=plan.n_folds,
        fold=plan.fold,
        epochs_run=run.epoch,
        stopped_early=run.tracker.stopped,
        steps_per_epoch=run.steps,
        train_ids=tuple(run.data.train_ids),
        val_ids=tuple(run.data.val_ids),
        activation=run.card.activation,
        trainer=run.trainer.name,
        # seconds over every epoch logged (resumed runs included): where a run's time goes
        train_time_s=_total(rows, "epoch_time_s"),
        val_time_s=_total(rows, "val_time_s"),
        machines=run.machines,
    )


def _total(rows: list[dict[str, Any]], key: str) -> float:
    """The sum of a log column over the rows that have it (0 when none has)."""
    return float(sum(r[key] for r in rows if isinstance(r.get(key), int | float)))


def _resume_checkpoint(
    config: TrainConfig, out: Path, resume: bool, dist_info: DistInfo
) -> dict | None:
    """The checkpoint to resume from (checked against ``config``), or ``None``.

    The fields that define the run must be the run's; the runtime fields and
    ``epochs`` may differ.

    Raises:
        FileNotFoundError: ``resume`` without ``last.pt``.
        OptionError: ``resume`` with run-defining fields that differ from the run's.
        FileExistsError: ``out`` holds a run and ``resume`` is false.
    """
    last = out / "last.pt"
    if not resume:
        if last.exists():  # every rank checks: each ends at once, before any collective
            raise FileExistsError(
                f"{out} already holds a training run (last.pt); resume it or choose another "
                "output folder"
            )
        return None
    if not last.is_file():
        raise FileNotFoundError(f"{last} does not exist: there is no run to resume")
    ckpt = load_checkpoint(last, map_location="cpu")
    saved = TrainConfig.from_dict(ckpt["config"]).to_dict()
    diff = differing_run_fields(saved, config.to_dict())
    if diff:
        named = ", ".join("{" + k + "}" for k in diff)
        raise OptionError(
            f"{{resume}}: the run in {out} was trained with other values of {named}; "
            "resume with the run's own (only runtime options and {epochs} may change)",
            "resume",
            *diff,
            "epochs",
        )
    return ckpt


class Tracker:
    """The best validation Dice so far, and early stopping on a plateau.

    A validation counts as an improvement when its mean foreground Dice beats the best
    by more than ``early_stop_min_delta`` (the first validation always does; a NaN mean
    counts as -1, so a run still gets a ``best.pt``). After ``early_stop_patience``
    validations in a row without one, and not before ``early_stop_min_epochs``, the
    run stops.
    """

    def __init__(
        self, patience: int | None = None, min_delta: float = 0.0, min_epochs: int = 0
    ) -> None:
        self.patience = patience
        self.min_delta = min_delta
        self.min_epochs = min_epochs
        self.best = -math.inf
        self.best_epoch = 0
        self.stale = 0
        self.stopped = False

    @classmethod
    def from_config(cls, config: TrainConfig) -> Tracker:
        """The tracker of a run's ``early_stop_*`` fields."""
        return cls(
            config.early_stop_patience, config.early_stop_min_delta, config.early_stop_min_epochs
        )

    def update(self, mean_dice: float, epoch: int) -> bool:
        """Record the validation of ``epoch`` (from 1); whether it is the new best."""
        score = nan_as_worst(mean_dice)
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
    gathered: list[Any] = [None] * dist_info.world_size
    dist.all_gather_object(gathered, state)
    return gathered


def _tensorboard(config: TrainConfig, out: Path):
    if not config.tensorboard:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter  # the tensorboard extra, on use
    except ImportError as exc:
        raise MissingExtraError("--tensorboard", "tensorboard") from exc
    return SummaryWriter(str(out / "tensorboard"))


def _report(config, final, tracker, out, plan, epochs_run) -> str:
    split = "fold all" if plan.n_folds is None else f"fold {plan.fold} of {plan.n_folds}"
    stop = " (stopped early)" if tracker.stopped else ""
    trainer = "" if config.trainer == DEFAULT_TRAINER else f", trainer {config.trainer}"
    lines = [
        f"trained {config.backbone} (fusion={config.fusion}, beta={config.beta}{trainer}) "
        f"for {epochs_run} epochs{stop}, {split} -> {out}"
    ]
    if plan.optimistic:
        lines.append("  (validated on its training cases: the Dice below is optimistic)")
    classes = {k: v for k, v in final.items() if k != "val_dice_mean"}
    if len(classes) > MANY_CLASSES:  # the mean, the median and the worst; all in a file
        scores = [v for v in classes.values() if v is not None and not math.isnan(v)]
        lines.append(
            f"  validation Dice over {len(classes)} classes: mean "
            f"{final.get('val_dice_mean', float('nan')):.4f}, median "
            f"{float(np.median(scores)) if scores else float('nan'):.4f}; every class in "
            f"{out / 'metrics.csv'}"
        )
        for key in worst_classes(classes, WORST):
            lines.append(f"  worst {key.removeprefix('val_dice_'):>26}: {classes[key]:.4f}")
    else:
        for key, value in final.items():
            lines.append(f"  validation Dice {key.removeprefix('val_dice_'):>20}: {value:.4f}")
    if tracker.best_epoch:
        lines.append(f"  best mean Dice {tracker.best:.4f} at epoch {tracker.best_epoch} (best.pt)")
    return "\n".join(lines)
