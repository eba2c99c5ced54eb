"""The algorithm: SFPO as an update rule on top of TRL's GRPO trainer (what a TRL user imports).

`config` (SFPOConfig), `trainer` (SFPOTrainer), `reposition` (θ0 snapshot and θ ← θ0 + α(θK − θ0) inside the
optimizer step), `switch` (the entropy z-score switch), `kl_budget` (α_t from a KL budget), `nonfinite` (the
non-finite guard), `zero_std` (skipping batches without reward signal), `guards` (reward and training-set checks),
`steplog` (one record per RL step) and `interrupt` (checkpoint on SIGINT/SIGTERM). Imports nothing else of sfpo.
"""
