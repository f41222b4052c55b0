"""Hooks: how the loop is observed (`events.py`: Hook, Control, TrainState), which hooks a run gets (`builtin.py`),
and the hooks behind XTuner's config fields (`profiler.py`, `tensorboard.py`, `xtuner.py`)."""
