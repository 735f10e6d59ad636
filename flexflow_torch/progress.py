"""Progress of a training or eval loop that shows wherever the output goes.

On a terminal it is a tqdm bar. Anywhere else (a CI log, `nohup`, a notebook, a pipe)
a bar prints nothing until it closes, so there it writes one plain line every `every`
steps before the last: the step, the caller's figures (loss, ...), the rate, the
elapsed time and the ETA. The caller prints its own line when the loop ends."""

from __future__ import annotations

import math
import os
import sys
import time

from tqdm import tqdm

EVERY_ENV = "FLEXFLOW_TORCH_LOG_EVERY"


def default_every(total: int) -> int:
    """Steps between two lines off a terminal: FLEXFLOW_TORCH_LOG_EVERY, else a tenth of
    the loop (at least 1)."""
    value = os.environ.get(EVERY_ENV)
    if value:
        try:
            return max(1, int(value))
        except ValueError:
            from .errors import ConfigError
            raise ConfigError(f"{EVERY_ENV}={value!r} is not a whole number of steps") from None
    return max(1, math.ceil(total / 10))


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """`with Progress(steps, "epoch 1/3", unit="tokens") as p: ... p.update(n, loss=f"{x:.3f}")`

    `update(items, text, **figures)` ends one step that processed `items` (samples,
    tokens: the `unit` of the rate); the text and figures are shown as given. `text`
    may be a function returning it, called only when something is shown (a bar's
    figures are refreshed at most every quarter second)."""

    def __init__(self, total: int, desc: str, unit: str = "samples", file=None,
                 every: int | None = None, leave: bool = False):
        self.total, self.desc, self.unit = int(total), desc, unit
        self.file = file if file is not None else sys.stderr
        self.every = every if every is not None else default_every(self.total)
        self.step, self.items = 0, 0
        self.start = time.perf_counter()
        isatty = getattr(self.file, "isatty", None)
        self.bar = tqdm(total=self.total, desc=desc, unit="step", file=self.file, leave=leave,
                        dynamic_ncols=True) if isatty is not None and isatty() else None
        self.text, self.figures = "", {}
        self.shown = 0.0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def update(self, items: int = 0, text: str = "", **figures) -> None:
        self.step += 1
        self.items += items
        self.text, self.figures = text, figures
        if self.bar is not None:
            self.bar.update(1)
            now = time.perf_counter()
            if now - self.shown >= 0.25 or self.step >= self.total:
                self.shown = now
                rate = self.items / max(now - self.start, 1e-9)
                self.bar.set_postfix_str(self._figures(rate), refresh=False)
        elif self.step % self.every == 0 and self.step < self.total:
            self._line()

    def _figures(self, rate: float) -> str:
        text = self.text() if callable(self.text) else self.text
        parts = [text] if text else []
        parts += [f"{k.replace('_', ' ')} {v}" for k, v in self.figures.items()]
        parts.append(f"{rate:,.0f} {self.unit}/s")
        return ", ".join(parts)

    def _line(self) -> None:
        elapsed = time.perf_counter() - self.start
        rate = self.items / max(elapsed, 1e-9)
        eta = elapsed / self.step * (self.total - self.step)
        print(f"{self.desc}: {self.step}/{self.total} steps ({100 * self.step // self.total}%), "
              f"{self._figures(rate)}, {_clock(elapsed)} elapsed, ETA {_clock(eta)}",
              file=self.file, flush=True)

    def close(self) -> None:
        """End the bar (off a terminal the caller's summary line follows)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
