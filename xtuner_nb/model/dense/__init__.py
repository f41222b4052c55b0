"""XTuner v1's `xtuner.v1.model.dense`: one module per dense architecture (`qwen3`, `qwen2`, `llama`), each holding
its config class and its size presets; `xtuner_nb.model` exports them all."""
