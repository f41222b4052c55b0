"""The contract between the training loop and whoever watches it (the notebook dashboard, trackers, users).

The loop emits events; a `Hook` observes them and may *request* things through `Control` (stop, save). Hooks get
the state and the metrics row, never the model or optimizer, so observing cannot change a run by accident.
Event names are the methods of `Hook` (fastai's idea); the Trainer calls them in this order:

    on_fit_begin  ->  (on_step_end  [on_eval_end]  [on_save])*  ->  on_fit_end
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

EndReason = Literal["finished", "stopped", "interrupted", "error"]
SaveKind = Literal["checkpoint", "hf", "snapshot"]


@dataclass
class TrainState:
    """A read-only snapshot of where the run is. `history` holds every metrics row emitted so far."""

    step: int = 0
    total_step: int = 0
    epoch: int = 1
    total_epoch: int | None = None
    consumed_tokens: int = 0
    elapsed: float = 0.0  # seconds of training in this and earlier (resumed) sessions
    exp_dir: Path | None = None
    rank: int = 0
    world_size: int = 1
    device: str = "cpu"
    precision: str | None = None  # compute dtype of the forward, e.g. "bfloat16"
    attention_backend: str | None = None  # the packed attention kernel in use, e.g. "torch" (varlen flash)
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@dataclass
class Control:
    """Requests from hooks, honoured by the loop at the next step boundary."""

    should_stop: bool = False
    should_save: bool = False
    stop_reason: str | None = None

    def request_stop(self, reason: str = "stop requested") -> None:
        self.should_stop, self.stop_reason = True, reason

    def request_save(self) -> None:
        self.should_save = True


class Hook:
    """Base class with no-op events; override what you need. `main_process_only` hooks run on rank 0 only."""

    main_process_only: bool = True

    def on_fit_begin(self, state: TrainState, control: Control) -> None: ...

    def on_step_end(self, state: TrainState, metrics: dict[str, Any], control: Control) -> None: ...

    def on_eval_end(self, state: TrainState, metrics: dict[str, Any], control: Control) -> None: ...

    def on_save(self, state: TrainState, path: Path, kind: SaveKind, control: Control) -> None: ...

    def on_fit_end(self, state: TrainState, reason: EndReason, control: Control) -> None: ...


class HookError(RuntimeError):
    """A hook raised: the message names the hook and the event."""


def call_hooks(hooks: list[Hook], event: str, *args: Any) -> None:
    """Run `event` on each hook in turn; the first that fails stops it, raised as a HookError that names it."""
    for hook in hooks:
        _call(hook, event, args)


def call_every_hook(hooks: list[Hook], event: str, *args: Any) -> list[HookError]:
    """Run `event` on every hook, whichever fail (the end of a run: each hook closes what it holds); returns the
    failures."""
    failures = []
    for hook in hooks:
        try:
            _call(hook, event, args)
        except HookError as exc:
            failures.append(exc)
    return failures


def _call(hook: Hook, event: str, args: tuple) -> None:
    try:
        getattr(hook, event)(*args)
    except (KeyboardInterrupt, HookError):
        raise
    except Exception as exc:  # name the culprit, as fastai does
        raise HookError(f"hook {type(hook).__name__}.{event} failed: {exc!r}") from exc
