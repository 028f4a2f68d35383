"""Layer 1: the paper's §3 as small pure functions on tensors and lists, in the order of one FR3E step.

`entropy` (token entropy, uncertainty scorers) -> `anchors` (the K most uncertain positions) -> `branching`
(states S_j as token ids with keys) -> `values` (V(S_j)) and `budget` (adaptive continuations per state) ->
`modulation` (α_j) -> `advantages` (A = α·Â) -> `sampling` (rejection sampling, dynamic sampling) -> `losses`
(clipped policy loss); `rewards` scores an answer. No model, tokenizer, accelerator, config object or file
I/O in any signature (checked by import-linter: no transformers, accelerate, datasets, vllm or pandas here).
"""
