"""What the command prints: the library's INFO lines, one labelled progress bar per phase, nothing else.

Libraries underneath print progress bars for work the user did not ask about (datasets' "Relabelling classes",
transformers' "Loading weights") and warnings about their own internals (transformers'
``is_gradient_checkpointing`` deprecation, raised by its own code). The command turns those off and keeps one
labelled bar for training and one per evaluated split.
"""

from __future__ import annotations

import logging
import sys
import warnings

from transformers.trainer_callback import ProgressCallback
from transformers.trainer_utils import has_length

#: the command's own logger; ``peft_dor.*`` INFO lines (DOR pool, resume point) are shown with it
logger = logging.getLogger("peft_dor.cli")


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` is now (it may be replaced after the handler is made, e.g. by pytest)."""

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value):
        pass


def setup_output(main_process: bool = True) -> None:
    """Log ``peft_dor`` INFO lines to stdout (WARNING on other ranks); silence other libraries' bars and warnings."""
    import datasets
    import transformers

    package = logging.getLogger("peft_dor")
    if not any(getattr(h, "_peft_dor_cli", False) for h in package.handlers):
        handler = _StdoutHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S"))
        handler._peft_dor_cli = True
        package.addHandler(handler)
    package.setLevel(logging.INFO if main_process else logging.WARNING)
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    # raised by transformers' own modelling code on every model load; nothing a user of the command can change
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


class LabelledProgressCallback(ProgressCallback):
    """Trainer's progress bars with a label: "Training", then one bar per evaluated split, named.

    Set :attr:`labels` to the names of the coming evaluations (in order) before running them.
    """

    def __init__(self) -> None:
        super().__init__()
        self.labels: list[str] = []

    def on_train_begin(self, args, state, control, **kwargs):
        from tqdm.auto import tqdm

        if state.is_world_process_zero:
            self.training_bar = tqdm(total=state.max_steps, desc="Training", dynamic_ncols=True)
        self.current_step = 0

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        if state.is_world_process_zero and has_length(eval_dataloader) and self.prediction_bar is None:
            from tqdm.auto import tqdm

            label = self.labels.pop(0) if self.labels else "Evaluating"
            self.prediction_bar = tqdm(total=len(eval_dataloader), desc=label, dynamic_ncols=True)
        super().on_prediction_step(args, state, control, eval_dataloader=eval_dataloader, **kwargs)
