"""The algorithms: SFPO and GXPO as update rules on top of TRL's GRPO trainer (what a TRL user imports).

`config` (SFPOConfig, GXPOConfig), `base` (the RL step both share), `trainer` (SFPOTrainer), `gxpo` (GXPOTrainer),
`checkpoint` (the run state and what a checkpoint keeps), `reposition` (θ0 snapshot and θ ← θ0 + α(θK − θ0) inside
the optimizer step), `extrapolation` and `retention` (GXPO's probes and θ0 + α·q ⊙ (θ2 − θ0) inside the optimizer
step), `switch` (the entropy z-score switch), `kl_budget` (α_t from a KL budget), `nonfinite` (the
non-finite guard), `zero_std` (skipping batches without reward signal), `guards` (reward and training-set checks),
`steplog` (one record per RL step) and `interrupt` (checkpoint on SIGINT/SIGTERM). Imports nothing else of sfpo.
"""
