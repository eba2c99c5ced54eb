"""The embedded default: offline tasks (`task`, `tasks`, `pyfunc`), the tiny policy builder and its shipped policies
(`tiny`, `tiny_policies/`), and the SmolLM2-135M loader (`smollm2`)."""
