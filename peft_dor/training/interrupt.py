"""Stop training gracefully on SIGINT / SIGTERM: save a checkpoint at the next step boundary, then stop.

Ctrl-C, or a cluster's pre-emption signal (SIGTERM), must not lose the epochs already trained. While
:class:`GracefulInterrupt` is installed, the first signal only sets a flag; at the end of the current optimiser step
the callback asks Trainer to save a checkpoint and stop (``control.should_save`` and ``should_training_stop``), and
``trainer.train`` returns normally, so the caller can say how to resume. A second signal exits at once (exit code
``128 + signal``), for when the step itself hangs.

Under DDP every rank must stop at the same step (the checkpoint is written collectively), so the flag is reduced
over the ranks at each step boundary: one tiny all-reduce per step.

Example:
    ```python
    from peft_dor.training.interrupt import GracefulInterrupt

    interrupt = GracefulInterrupt()
    trainer.add_callback(interrupt)
    with interrupt.installed():
        trainer.train()
    if interrupt.stopped_at is not None:
        print(f"interrupted; resume from checkpoint-{interrupt.stopped_at}")
    ```
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from transformers import TrainerCallback

logger = logging.getLogger(__name__)

DEFAULT_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class GracefulInterrupt(TrainerCallback):
    """A Trainer callback that turns the first SIGINT/SIGTERM into "checkpoint, then stop" (see the module doc).

    Attributes:
        signal_number: the first signal received, or None.
        stopped_at: the global step at which training was stopped for the signal, or None.
    """

    def __init__(self, signals: Sequence[int] = DEFAULT_SIGNALS) -> None:
        self.signals = tuple(signals)
        self.signal_number: int | None = None
        self.stopped_at: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def exit_code(self) -> int:
        """The conventional exit code of a process ended by the signal (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + int(self.signal_number or signal.SIGINT)

    def _handle(self, number, frame) -> None:
        if self.signal_number is not None:
            print(f"\nSecond {signal.Signals(number).name}: exiting now, without a checkpoint.", file=sys.stderr)
            sys.stderr.flush()
            os._exit(128 + number)
        self.signal_number = number
        print(
            f"\n{signal.Signals(number).name} received: saving a checkpoint at the end of this step, then stopping "
            "(press Ctrl-C again to exit at once).",
            file=sys.stderr,
            flush=True,
        )

    @contextmanager
    def installed(self) -> Iterator[GracefulInterrupt]:
        """Install the signal handlers for the duration of the block (main thread only), then restore them."""
        for number in self.signals:
            with contextlib.suppress(ValueError):  # not the main thread: signals stay with whoever owns them
                self._previous[number] = signal.signal(number, self._handle)
        try:
            yield self
        finally:
            for number, previous in self._previous.items():
                signal.signal(number, previous)
            self._previous = {}

    def _requested(self, args) -> bool:
        requested = self.signal_number is not None
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            import torch

            device = args.device if dist.get_backend() != "gloo" else "cpu"
            flag = torch.tensor([1 if requested else 0], device=device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            if flag.item() and self.signal_number is None:
                self.signal_number = signal.SIGTERM  # another rank was signalled
            requested = bool(flag.item())
        return requested

    def on_step_end(self, args, state, control, **kwargs):
        if self.stopped_at is None and self._requested(args):
            self.stopped_at = state.global_step
            control.should_save = True
            control.should_training_stop = True
            logger.info("Stopping at step %d after saving a checkpoint.", state.global_step)
        return control

    def on_epoch_end(self, args, state, control, **kwargs):
        if self.stopped_at is not None and self.stopped_at == state.global_step:
            control.should_save = False  # already saved at this very step
        return control
