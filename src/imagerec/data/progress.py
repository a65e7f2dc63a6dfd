"""A progress line for long work (decoding a data set): rate and time left."""

import sys
import time

from imagerec.errors import printable


class Progress:
    """A progress line with rate and time left: a bar on a terminal; a line every 10% in logs (a bar
    would fill a log with noise)."""

    def __init__(self, total: int, label: str, enabled: bool):
        self.total, self.label, self.enabled = total, printable(label), enabled
        self.done, self.started, self.reported = 0, time.perf_counter(), 0

    def advance(self, count: int) -> None:
        self.done += count
        if not self.enabled or self.total == 0:
            return
        elapsed = time.perf_counter() - self.started
        rate = self.done / max(elapsed, 1e-9)
        status = f"{self.done}/{self.total} files, {rate:.0f}/s, " + (
            f"{elapsed:.0f} s" if self.done >= self.total else f"{(self.total - self.done) / rate:.0f} s left")
        if sys.stderr.isatty():
            filled = 30 * self.done // self.total
            print(f"\r{self.label} [{'=' * filled}{'.' * (30 - filled)}] {status}   ",
                  end="\n" if self.done >= self.total else "", file=sys.stderr, flush=True)
        elif self.done >= self.total or self.done - self.reported >= max(1, self.total // 10):
            self.reported = self.done
            print(f"{self.label}: {status}", file=sys.stderr, flush=True)


