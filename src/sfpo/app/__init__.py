"""The application: the `sfpo` command (`cli`), YAML recipes and their validation (`recipe`, `validate`), the names
they use (`catalog`), the train/eval pipeline (`pipeline`), the demo (`demo`), the compare report (`report`), the run
log (`runlog`) and quiet console output (`quiet`)."""
