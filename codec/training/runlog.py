"""The run's JSONL log and the running means it reports.

`log.jsonl` holds one JSON object per line: per log interval {"step", "time_s" (training wall seconds),
"cpu_s" (CPU seconds of the training process, all threads, over all invocations), "lr", "loss",
"samples_per_s", <task metrics>}, plus the task's validation results (merged into that line, or a line
{"step", "time_s", "cpu_s", <validation>} of their own).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Mapping, Sequence, Union

from vqcodec.files import atomic_write

__all__ = ["Metric", "MetricMeans", "RunLog"]

log = logging.getLogger(__name__)
Metric = Union[float, Sequence[float]]
"""A logged number: a float, or a list of floats (e.g. one per quantizer stage)."""


class MetricMeans:
    """Running means of the metrics of the steps since the last `reset` (lists element-wise)."""

    def __init__(self) -> None:
        self.count = 0
        self._sums: dict[str, float | list[float]] = {}

    def add(self, metrics: Mapping[str, Metric]) -> None:
        for key, value in metrics.items():
            if isinstance(value, (int, float)):
                self._sums[key] = self._sums.get(key, 0.0) + float(value)
            else:
                prev = self._sums.get(key) or [0.0] * len(value)
                self._sums[key] = [a + float(b) for a, b in zip(prev, value)]
        self.count += 1

    def means(self) -> dict[str, Metric]:
        n = max(self.count, 1)
        return {k: (v / n if isinstance(v, float) else [x / n for x in v]) for k, v in self._sums.items()}

    def reset(self) -> None:
        self.count = 0
        self._sums = {}


class RunLog:
    """Appends JSON lines to `path`; does nothing when not `enabled` (ranks other than 0)."""

    def __init__(self, path: Path, enabled: bool = True) -> None:
        self.path, self.enabled = Path(path), enabled

    def drop_after(self, step: int) -> None:
        """Remove lines of steps after `step` (and a torn last line): a resumed run redoes those steps."""
        if not self.enabled or not self.path.is_file():
            return
        lines = self.path.read_text(encoding="utf-8").splitlines()
        keep = []
        for line in lines:
            try:
                if json.loads(line).get("step", 0) <= step:
                    keep.append(line)
            except (json.JSONDecodeError, AttributeError):
                pass
        if len(keep) != len(lines):
            log.info("%s: dropped %d lines after step %d (redone by the resumed run)", self.path,
                     len(lines) - len(keep), step)
            text = "".join(line + "\n" for line in keep)
            atomic_write(self.path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))

    def write(self, record: Mapping) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
