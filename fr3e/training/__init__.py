"""Layer 5: one trainer for FR3E and GRPO++ and what it needs.

`config` (every field documented and validated), `trainer` (the step, top to bottom), and beside it the
records of a step (`rollouts`), the policy and its log-prob pass (`policy`), reductions over processes
(`collectives`), checkpoints and resuming (`resume`, `checkpoint`), what each step logs (`steplog`), the
Accelerator (`distributed`), run directories (`runlog`), dashboards (`tracking`) and model cards
(`modelcard`).
"""
