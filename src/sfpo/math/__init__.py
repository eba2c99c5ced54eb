"""The math domain: named dataset recipes (`data`), math-verify rewards (`reward`). The paper's six benchmarks are
recipes here, evaluated by `sfpo.common.evaluate`."""
