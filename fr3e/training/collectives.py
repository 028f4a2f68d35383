"""The reductions the trainer makes over processes (`Collectives`, mixed into `fr3e.training.trainer.Trainer`).

Each method is a collective when the run has several processes: every process must call it the same number
of times, whatever its data (a process with nothing to report passes 0 or an empty list). With one process
nothing is communicated.
"""

from __future__ import annotations

import torch

from fr3e.method.sampling import ALL_RIGHT, ALL_WRONG


class Collectives:
    """Sums, means, maxima and gathers over the run's processes; needs `self.accelerator` and `self.world`."""

    def _sum(self, value: float) -> float:
        if self.world == 1:
            return value
        t = torch.tensor([float(value)], device=self.accelerator.device)
        return self.accelerator.reduce(t, reduction="sum").item()

    def _gmean(self, values: list[float]) -> float:
        """Mean over all processes."""
        n = self._sum(len(values))
        return self._sum(float(sum(values))) / n if n else float("nan")

    def _counts(self, outcomes: list[str], prefix: str) -> dict:
        """All-Right / All-Wrong / mixed group counts, summed over processes."""
        right, wrong = outcomes.count(ALL_RIGHT), outcomes.count(ALL_WRONG)
        return {f"{prefix}_all_right": int(self._sum(right)), f"{prefix}_all_wrong": int(self._sum(wrong)),
                f"{prefix}_mixed": int(self._sum(len(outcomes) - right - wrong))}

    def _gather(self, values: list) -> list:
        """Concatenation of every process's list, in process order (same on every process)."""
        if self.world == 1:
            return list(values)
        from accelerate.utils import gather_object

        return list(gather_object(list(values)))

    def _max(self, value: int) -> int:
        if self.world == 1:
            return value
        t = torch.tensor([value], device=self.accelerator.device)
        return int(self.accelerator.gather(t).max().item())
