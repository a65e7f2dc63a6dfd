"""Progress inside an epoch where no progress bar is drawn: with output going to a file or a pipe (a log, CI,
`nohup`) Keras' `verbose=2` prints one line per epoch, and a default-recipe epoch on a slow CPU is 15 minutes of
silence. `StepProgress` adds a line at most every `interval_s`: steps done, images/s, the epoch's time left."""

import time

import keras

INTERVAL_S = 30.0  # a line at least this often while an epoch runs (one step can take longer: then after it)


class StepProgress(keras.callbacks.Callback):
    """Prints "epoch E/N: step S/T, R images/s, ~X s left in this epoch (loss L)" when `interval_s` has passed
    since the epoch began or the last line. `batch_size` turns steps into images; `clock` and `write` are the
    wall clock and the printer (injectable for tests)."""

    def __init__(self, batch_size: int, interval_s: float | None = None, clock=time.monotonic, write=None):
        super().__init__()
        self.batch_size, self.clock = batch_size, clock
        self.interval_s = INTERVAL_S if interval_s is None else interval_s
        self.write = write or (lambda line: print(line, flush=True))
        self._epoch, self._started, self._last = 0, 0.0, 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._started = self._last = self.clock()

    def on_train_batch_end(self, batch, logs=None):
        now = self.clock()
        if now - self._last < self.interval_s:
            return
        self._last = now
        self.write(progress_line(self._epoch, self.params.get("epochs"), batch + 1, self.params.get("steps"),
                                 now - self._started, self.batch_size, (logs or {}).get("loss")))


def progress_line(epoch: int, epochs, done: int, steps, elapsed_s: float, batch_size: int, loss=None) -> str:
    """The line for `done` steps of epoch `epoch` (0-based) after `elapsed_s`; `epochs`/`steps` may be None
    (unknown: then no total and no time left)."""
    rate = done * batch_size / max(elapsed_s, 1e-9)
    line = f"epoch {epoch + 1}/{epochs or '?'}: step {done}/{steps or '?'}, {rate:.0f} images/s"
    if steps:
        line += f", ~{max(steps - done, 0) * elapsed_s / done:.0f} s left in this epoch"
    if loss is not None:
        line += f" (loss {float(loss):.4f})"
    return line
