"""Layer 6: from run directories to `results/`; what the notebooks call (through `report`).

Runs: `runs` (arms, names, commands), `jobs` (what is missing), `launch` (running it, resumable), `loaders`
(reading it). Numbers: `stats`, `tables`, `curves`, `costs`, `claims`, `studies`. Output: `plots`,
`artefacts`. Drivers: `reproduction` (papermill), `walkthrough` (notebook 01), `plan` (paper-profile cost).
"""
