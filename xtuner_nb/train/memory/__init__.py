"""Memory: one estimate of a run, one list of ways to make it fit, and the checks and messages built from them.

- `estimate.py`: the per-part formulas (`estimate_memory`), `MemoryEstimate`, and `estimate_run` for a TrainerConfig;
- `budget.py`: what a device has (`measure_budget` on this machine, `planned_budget` for a named GPU);
- `ways.py`: `ways_to_fit`, the one list of changes that lower an estimate, each priced, and the TrainerConfig that
  runs it (`config_with_changes`);
- `fit.py`: the Trainer's fit check (`check_run_fits`, `MemoryFitError`), its OOM message (`oom_message`) and the
  warning about memory an earlier Trainer still holds (`warn_if_memory_is_held`).

`xtuner_nb.notebook.memory.show_fit` draws an estimate; it computes nothing of its own.
"""

from .budget import GPUS, DeviceBudget, host_memory, measure_budget, planned_budget, process_resident_bytes
from .estimate import (GiB, MemoryEstimate, builds_on_meta, estimate_memory, estimate_run, layer_activation_bytes,
                       layer_forward_temporaries, lora_params, reestimate)
from .fit import SKIP_ENV, MemoryFitError, check_fit, check_run_fits, oom_message, warn_if_memory_is_held
from .ways import WayToFit, config_with_changes, ways_to_fit

__all__ = ["GiB", "MemoryEstimate", "estimate_memory", "estimate_run", "builds_on_meta", "reestimate", "lora_params",
           "layer_activation_bytes", "layer_forward_temporaries", "GPUS", "DeviceBudget", "measure_budget",
           "planned_budget", "host_memory", "process_resident_bytes", "WayToFit", "ways_to_fit", "config_with_changes",
           "SKIP_ENV", "MemoryFitError", "check_fit", "check_run_fits", "oom_message", "warn_if_memory_is_held"]
