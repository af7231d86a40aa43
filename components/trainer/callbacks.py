"""The Trainer's callbacks: resumable backups on a time budget, where a resumed run
starts, the learning rate in the history, and the set one phase uses."""

from __future__ import annotations

import os
import time
from typing import Any

import tf_keras

from visiontfx.components.trainer import hardware
from visiontfx.components.trainer.settings import TrainerSettings


class ResumeLogger(tf_keras.callbacks.Callback):
    """Reports where fit() really starts: after BackupAndRestore, a resumed run starts late.

    It must come after BackupAndRestore in the callback list; the first
    epoch/batch hooks then see the restored counters.
    """

    def __init__(self, phase: str, initial_epoch: int, record: dict[str, Any]) -> None:
        super().__init__()
        self.phase, self.initial_epoch, self.record = phase, initial_epoch, record
        self._epoch: int | None = None
        self._checked = False
        self._supports_tf_logs = True  # it reads no logs: spare Keras converting them every step

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self._epoch is None:
            self._epoch = epoch

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self._checked:
            return
        self._checked = True
        epoch = int(self.initial_epoch if self._epoch is None else self._epoch)
        batch = int(batch)  # Keras passes numpy integers
        if (epoch, batch) != (self.initial_epoch, 0):
            self.record.update({"phase": self.phase, "epoch": epoch, "step": batch})
            print(
                f"[Trainer] {self.phase}: resuming from a checkpoint at epoch {epoch + 1}, step {batch}",
                flush=True,
            )


class BudgetedBackupAndRestore(tf_keras.callbacks.BackupAndRestore):
    """BackupAndRestore that keeps checkpointing to about ``budget`` of the training time.

    A fixed step interval is either too rare for long steps or, for a quick
    head-only warm-up, a real cost: four backups per epoch of Lite0 and its
    Adam state slowed the warm-up markedly here. This one takes its first
    backup after ``first_after_steps`` steps, then waits ``cost / budget``
    seconds after each backup (a 0.3 s backup → the next after 60 s at 0.5%:
    a kill loses about a minute, the run pays half a percent).
    The resume logic is Keras' own (mid-epoch: ``save_freq`` is an int).

    Under MultiWorkerMirroredStrategy every worker must back up at the same
    step (saving is collective); timing differs per worker, so there a fixed
    interval of ``first_after_steps`` steps is kept.
    """

    def __init__(
        self, backup_dir: str, first_after_steps: int, budget: float = 0.005, timed: bool = True
    ) -> None:
        super().__init__(backup_dir, save_freq=first_after_steps, delete_checkpoint=True)
        self.first_after_steps, self.budget, self.timed = first_after_steps, budget, timed
        self._steps_seen = 0
        self._next_backup: float | None = None

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if not self.timed:
            super().on_train_batch_end(batch, logs)
            return
        # tf_keras 2.16 internals (the parent's own hook does the same two calls).
        self._training_state.backup_if_preempted()
        self._steps_seen += 1
        if self._next_backup is None:
            due = self._steps_seen >= self.first_after_steps
        else:
            due = time.monotonic() >= self._next_backup
        if due:
            started = time.monotonic()
            self._backup(epoch=self._current_epoch, batch=batch)
            cost = time.monotonic() - started
            self._next_backup = time.monotonic() + cost / self.budget


class LearningRateLogger(tf_keras.callbacks.Callback):
    """Adds the optimizer's learning rate to each epoch's logs (for the report)."""

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is not None:
            logs["learning_rate"] = float(tf_keras.backend.get_value(self.model.optimizer.learning_rate))


def make_callbacks(
    settings: TrainerSettings,
    phase: str,
    log_dir: str,
    backup_dir: str | None,
    steps_per_epoch: int,
) -> list[tf_keras.callbacks.Callback]:
    """The callbacks of one phase; without ``backup_dir`` nothing is written (tuning trials).

    No ModelCheckpoint of the best weights: EarlyStopping already puts them
    back into the model that is exported, BackupAndRestore covers resuming,
    and writing every improvement cost time (17 MB per epoch for Lite0).
    """
    training = settings.training
    callbacks: list[tf_keras.callbacks.Callback] = [
        LearningRateLogger(),
        tf_keras.callbacks.EarlyStopping(
            monitor="val_loss",
            patience=training.early_stopping_patience,
            restore_best_weights=True,
            verbose=1,
        ),
    ]
    if settings.lr_schedule == "plateau":  # a scheduled rate is not the callback's to change
        callbacks.append(
            tf_keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss",
                factor=0.2,
                patience=training.reduce_lr_patience,
                min_lr=1e-7,
                verbose=1,
            )
        )
    if backup_dir is None:
        return callbacks
    return [
        *callbacks,
        BudgetedBackupAndRestore(
            os.path.join(backup_dir, phase),
            first_after_steps=max(1, steps_per_epoch // 4),
            timed=hardware.cluster_workers(hardware.tf_config()) <= 1,
        ),
        tf_keras.callbacks.TensorBoard(log_dir=os.path.join(log_dir, "tensorboard"), update_freq="epoch"),
    ]
