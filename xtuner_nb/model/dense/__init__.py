"""XTuner v1's module path `xtuner.v1.model.dense` (re-exports of `xtuner_nb.model.config`)."""
