"""PromptSRC's Gaussian prompt aggregation (GPA) as a ``transformers`` Trainer callback.

After epoch ``t`` of ``E`` the callback adds ``g_t * theta_t`` to a running sum, where ``theta_t`` are the trainable
(prompt) parameters and ``g_t`` is a Gaussian ``N(t; mean, std)`` normalised over ``t = 1..E``; when training ends the
prompts are replaced by the sum. With PromptSRC's defaults (``E=20``, mean 15, std 1) the weights of epochs 12-18 are
about ``[.004, .054, .242, .399, .242, .054, .004]`` and the others nearly 0.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch
from transformers import TrainerCallback

#: file holding the running sum inside each Trainer checkpoint, so a resumed run aggregates what an uninterrupted one
#: would
GPA_STATE_NAME = "gpa_state.safetensors"


def gpa_weights(num_epochs: int, mean: float = 15.0, std: float = 1.0) -> np.ndarray:
    """GPA weights ``g_1..g_E``: the normal density at epochs ``1..E``, normalised to sum to 1.

    Example:
        ```python
        gpa_weights(20)[11:18].round(3)  # epochs 12-18: [0.004 0.054 0.242 0.399 0.242 0.054 0.004]
        ```
    """
    if not isinstance(num_epochs, int) or num_epochs < 1:
        raise ValueError(f"`num_epochs` must be a positive integer; got {num_epochs!r}.")
    if not std > 0:
        raise ValueError(f"`std` must be positive; got {std!r}.")
    epochs = np.arange(1, num_epochs + 1, dtype=np.float64)
    density = np.exp(-0.5 * ((epochs - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi))
    total = density.sum()
    if not total > 0:
        raise ValueError(
            f"GPA's Gaussian (mean={mean}, std={std}) puts no weight on epochs 1..{num_epochs}; choose a mean inside "
            "the run (PromptSRC: mean 15 for 20 epochs)."
        )
    return density / total


class GPACallback(TrainerCallback):
    """Gaussian prompt aggregation over epochs (PromptSRC): the final prompts are ``sum_t g_t * prompts_t``.

    The running sum is kept in float32 next to the parameters and written into every checkpoint, so
    ``resume_from_checkpoint`` continues it. At the end of training (after ``load_best_model_at_end``, which it then
    overrides) the trainable parameters are set to the aggregate. Every rank aggregates its own (identical) copy.

    Args:
        mean: the Gaussian's mean, in epochs (1-based).
        std: its standard deviation, in epochs.

    Example:
        ```python
        from peft_dor import DORTrainer, GPACallback

        trainer = DORTrainer(model=model, args=args, train_dataset=train, callbacks=[GPACallback(mean=15, std=1)])
        trainer.train()  # the model now holds the aggregated prompts
        ```
    """

    def __init__(self, mean: float = 15.0, std: float = 1.0) -> None:
        if not std > 0:
            raise ValueError(f"`std` must be positive; got {std!r}.")
        self.mean = mean
        self.std = std
        self.weights: np.ndarray | None = None
        self.aggregate: dict[str, torch.Tensor] = {}
        #: the checkpoint a resumed run starts from (``DORTrainer`` sets it); None: ``checkpoint-<step>`` in
        #: ``args.output_dir``
        self.resume_checkpoint: str | None = None

    @staticmethod
    def _trainable(model) -> dict[str, torch.nn.Parameter]:
        return {name: param for name, param in model.named_parameters() if param.requires_grad}

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.weights = gpa_weights(max(1, math.ceil(state.num_train_epochs)), self.mean, self.std)
        self.aggregate = {}
        if state.global_step > 0:  # resuming: pick up the sum saved with the checkpoint
            folder = self.resume_checkpoint or os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
            path = os.path.join(folder, GPA_STATE_NAME)
            if not os.path.isfile(path) and int((state.epoch or 0) + 1e-6) >= 1:
                # an aggregate restarted from zero would silently drop the finished epochs' prompts
                raise ValueError(
                    f"Resuming Gaussian prompt aggregation after epoch {int(state.epoch + 1e-6)} needs the running sum "
                    f"{GPA_STATE_NAME} from the checkpoint, but {folder!r} has none. Resume from a checkpoint written "
                    "by a run with GPACallback (through DORTrainer, or inside args.output_dir)."
                )
            if os.path.isfile(path):
                from safetensors.torch import load_file

                params = self._trainable(model)
                device = next(iter(params.values())).device if params else "cpu"
                self.aggregate = {k: v.to(device) for k, v in load_file(path).items()}

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        epoch = max(1, math.ceil(state.epoch - 1e-6))  # the 1-based epoch that just ended (a partial last one too)
        if self.weights is None or epoch > len(self.weights):
            return
        weight = float(self.weights[epoch - 1])
        with torch.no_grad():
            for name, param in self._trainable(model).items():
                term = weight * param.detach().float()
                self.aggregate[name] = self.aggregate[name] + term if name in self.aggregate else term

    def on_save(self, args, state, control, **kwargs):
        if self.aggregate and state.is_world_process_zero:
            from safetensors.torch import save_file

            folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
            if os.path.isdir(folder):
                # write then rename: a crash never leaves a half-written sum in the checkpoint
                temporary = os.path.join(folder, f".{GPA_STATE_NAME}.tmp{os.getpid()}")
                save_file({k: v.detach().cpu().contiguous() for k, v in self.aggregate.items()}, temporary)
                os.replace(temporary, os.path.join(folder, GPA_STATE_NAME))

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if not self.aggregate:
            return
        params = self._trainable(model)
        missing = sorted(set(params) - set(self.aggregate))
        if missing:
            raise RuntimeError(
                f"GPA has no aggregate for the trainable parameters {missing}; were they added mid-run?"
            )
        with torch.no_grad():
            for name, param in params.items():
                param.copy_(self.aggregate[name].to(param.dtype))
