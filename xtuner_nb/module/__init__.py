"""XTuner v1's module path `xtuner.v1.module` for the config classes user code imports from it (re-exports)."""
