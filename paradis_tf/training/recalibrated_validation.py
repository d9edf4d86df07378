"""RecalibratedValidation: validation numbers that match the model as deployed."""

from __future__ import annotations

from typing import Optional

import numpy as np
import keras
from keras import ops

from paradis_tf.layers.switchable_batch_normalization import SwitchableBatchNormalization

__all__ = ["RecalibratedValidation"]


class RecalibratedValidation(keras.callbacks.Callback):
    """Recalibrates batch norm before each validation, and puts it back after.

    While learned gates still change, the moving batch-norm statistics lag the
    channels each switch receives, so ``fit``'s ``val_`` metrics can read far
    below what the same weights give once ``recalibrate_batch_norm`` has run
    (the README's training guide has a measured case). Pass this callback to
    ``fit`` with ``validation_data``: before each validation it saves every
    switch's moving statistics, recomputes them on ``num_batches`` batches of
    ``dataset`` (as ``SplitModel.recalibrate_batch_norm``) for the gates in use
    at that step, and after the validation restores the saved ones, so training
    goes on exactly as without the callback. Works for ``evaluate`` too.

    Args:
        dataset: training batches (``x`` or ``(x, y, ...)``), ideally without
            augmentation; iterated from its start at each validation.
        num_batches: batches per switch per validation, a positive int.
        verbose: 1 prints one line per switch and validation.
    """

    def __init__(self, dataset, num_batches: int = 20, verbose: int = 0):
        super().__init__()
        if isinstance(num_batches, bool) or not isinstance(num_batches, int) or num_batches < 1:
            raise ValueError(f"num_batches must be a positive int, received {num_batches!r}.")
        if dataset is None:
            raise ValueError("dataset must yield training batches, received None.")
        self.dataset = dataset
        self.num_batches = num_batches
        self.verbose = verbose
        self._saved: Optional[list] = None

    def _statistics(self):
        """Every (moving mean, moving variance) variable of every switch."""
        for layer in self.model._flatten_layers():
            if isinstance(layer, SwitchableBatchNormalization):
                yield from layer.moving_means
                yield from layer.moving_variances

    def on_test_begin(self, logs=None):
        if not hasattr(self.model, "recalibrate_batch_norm"):
            raise ValueError(
                "RecalibratedValidation needs a SplitModel (a model with "
                f"recalibrate_batch_norm), received {type(self.model).__name__}."
            )
        # Copies, not views of the buffers that recalibration overwrites.
        self._saved = [np.array(ops.convert_to_numpy(v.value)) for v in self._statistics()]
        self.model.recalibrate_batch_norm(self.dataset, num_batches=self.num_batches, verbose=self.verbose)

    def on_test_end(self, logs=None):
        if self._saved is None:
            return
        for variable, value in zip(self._statistics(), self._saved):
            variable.assign(value)
        self._saved = None
