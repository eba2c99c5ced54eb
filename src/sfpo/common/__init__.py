"""What the domains share: reading completions (`text`), dataset recipes and their loading (`datasets`), and the
evaluation loop (`evaluate`). Imports nothing of sfpo but itself."""
