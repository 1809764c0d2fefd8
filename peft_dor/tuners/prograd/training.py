"""ProGrad's prompt-aligned gradient: the update rule, applied where the optimiser step is built.

ProGrad (Zhu et al., ICCV 2023) trains CoOp's prompt but only along directions that do not fight zero-shot CLIP:
with ``g`` the training gradient and ``g_kl`` the gradient of the distillation term
``kl = mean_b Σ_c −softmax(zs/T)·log_softmax(s/T)·T²`` (``s`` the prompted logits, ``zs`` zero-shot CLIP's), per
parameter tensor

    g ← g − λ·(g·ĝ_kl)·ĝ_kl   if cos(g, g_kl) < 0,   else g unchanged.

The KL gradient itself is never added. The model stays plain (``ProGradConfig`` is CoOp's prompt plus the settings);
the rule lives in :class:`ProGradMixin`, a ``transformers.Trainer`` mixin that ProGrad's method spec declares, so
:class:`~peft_dor.DORTrainer` on a ProGrad model applies it without a special trainer class:

* the KL gradient is taken inside the step's single forward (a forward hook on the classifier computes
  ``torch.autograd.grad(kl, prompts, retain_graph=True)``), so there is still one forward per step, as DDP needs;
* the ordinary backward of the training loss (CE, plus method losses and DOR under ``DORTrainer``) then fills
  ``.grad`` as usual, synchronised across processes by DDP;
* on the micro-batch that completes an optimiser step, the KL gradients accumulated over the micro-batches are
  averaged across processes and each ``.grad`` is projected, before clipping and the optimiser step.

With DOR the projected gradient is that of ``CE + λ_dor·L_dor`` (the original has CE only).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .config import ProGradConfig


def project_conflicting_gradient(grad: torch.Tensor, reference: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
    """ProGrad's rule for one tensor: remove ``weight`` × ``grad``'s component along ``reference`` if they conflict.

    Args:
        grad: the training gradient ``g``.
        reference: the guiding gradient ``g_kl`` (same shape).
        weight: λ; 1.0 makes the result orthogonal to ``reference``.

    Returns:
        ``g − λ·(g·ĝ)·ĝ`` when ``g·ĝ < 0`` (``ĝ = reference / ||reference||``), otherwise ``grad`` itself; a zero
        ``reference`` or ``grad`` leaves ``grad`` unchanged. No host synchronisation (no ``if`` on tensor values).

    Example:
        ```python
        g = project_conflicting_gradient(torch.tensor([1.0, -1.0]), torch.tensor([0.0, 1.0]))  # tensor([1., 0.])
        ```
    """
    flat, ref = grad.reshape(-1).float(), reference.reshape(-1).float()
    unit = ref / ref.norm().clamp_min(torch.finfo(ref.dtype).tiny)
    along = flat @ unit
    coefficient = torch.where(along < 0, along, torch.zeros_like(along)) * weight
    return (flat - coefficient * unit).reshape(grad.shape).to(grad.dtype)


def prograd_kl_loss(logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """ProGrad's distillation term ``mean_b Σ_c −softmax(zs/T)·log_softmax(s/T)·T²`` (cross-entropy to the teacher).

    It differs from the KL divergence by the teacher's entropy, a constant, so the gradient is the KL's.
    """
    teacher = F.softmax(teacher_logits.float() / temperature, dim=-1)
    student = F.log_softmax(logits.float() / temperature, dim=-1)
    return -(teacher * student).sum(dim=-1).mean() * temperature**2


def _prograd_config(model: nn.Module):
    peft_config = getattr(model, "peft_config", {})
    active = getattr(model, "active_adapter", None)
    config = peft_config.get(active) if isinstance(peft_config, dict) else None
    if not isinstance(config, ProGradConfig):
        raise ValueError(
            "ProGrad's gradient projection needs a model built with ProGradConfig (its teacher template, λ and T); "
            f"got {type(config).__name__}. Use get_peft_model(clip, peft_dor.ProGradConfig(...))."
        )
    return config


class ProGradMixin:
    """Adds ProGrad's gradient projection to a ``transformers.Trainer`` (put it first in the bases).

    The model must be a ``PeftModel`` built with :class:`~peft_dor.ProGradConfig`. The zero-shot teacher is the same
    base model with its prompts suspended (text features cached once per class list; the batch's image features are
    the frozen image encoder's, reused from the forward), evaluated in float32. The mean distillation term since the
    last log is logged as ``loss_prograd_kl``.

    ``DORTrainer`` composes it by itself for a ProGrad model; the mixin is for other ``Trainer`` classes.

    Example:
        ```python
        from transformers import Trainer

        class MyProGradTrainer(ProGradMixin, Trainer):
            pass

        trainer = MyProGradTrainer(model=model, args=args, train_dataset=train, data_collator=collate)
        ```
    """

    def _prograd_state(self) -> dict:
        state = self.__dict__.get("_prograd")
        if state is None:
            state = self.__dict__["_prograd"] = {"grads": None, "kl": []}
        return state

    def training_step(self, model: nn.Module, inputs: dict, num_items_in_batch=None) -> torch.Tensor:
        peft_model = self.accelerator.unwrap_model(model)
        config = _prograd_config(peft_model)
        wrapper = peft_model.get_base_model()
        params = [p for p in model.parameters() if p.requires_grad]

        def take_kl_gradient(module: nn.Module, args, output) -> None:
            self._accumulate_kl_gradient(wrapper, output, params, config)

        handle = wrapper.register_forward_hook(take_kl_gradient)
        try:
            loss = super().training_step(model, inputs, num_items_in_batch)
        finally:
            handle.remove()
        if self.accelerator.sync_gradients:
            self._project_gradients(params, config.prograd_lambda)
        return loss

    def _accumulate_kl_gradient(self, wrapper: nn.Module, output, params: Sequence[nn.Parameter], config) -> None:
        device = output.logits.device
        with torch.autocast(device.type, enabled=False):  # ProGrad's teacher runs in float32
            text = wrapper.zero_shot_text_features(wrapper.class_names, config.template)
            scale = wrapper.clip.logit_scale.detach().float().exp()
            teacher = scale * output.image_embeds.detach().float() @ text.to(device).t()
            kl = prograd_kl_loss(output.logits, teacher, config.kl_temperature)
        grads = torch.autograd.grad(kl, params, retain_graph=True, allow_unused=True)
        state = self._prograd_state()
        grads = [torch.zeros_like(p) if g is None else g.detach() for p, g in zip(params, grads, strict=True)]
        if state["grads"] is None:
            state["grads"] = grads
        else:
            state["grads"] = [a + b for a, b in zip(state["grads"], grads, strict=True)]
        state["kl"].append(kl.detach())

    def _project_gradients(self, params: Sequence[nn.Parameter], weight: float) -> None:
        state = self._prograd_state()
        references, state["grads"] = state["grads"], None
        if references is None:
            return
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # .grad is already averaged over processes by DDP; average the guide the same way so every rank
            # projects identically
            world = torch.distributed.get_world_size()
            for reference in references:
                torch.distributed.all_reduce(reference)
                reference.div_(world)
        with torch.no_grad():
            for param, reference in zip(params, references, strict=True):
                if param.grad is not None:
                    param.grad.copy_(project_conflicting_gradient(param.grad, reference, weight))

    def loss_components(self, terms) -> dict[str, torch.Tensor]:
        # DORTrainer's NaN/inf check also names the distillation term that guides the projection
        parts = super().loss_components(terms)
        kl = self._prograd_state()["kl"]
        if kl:
            parts["prograd_kl"] = kl[-1]
        return parts

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        state = self._prograd_state()
        if state["kl"] and "loss" in logs:
            logs["loss_prograd_kl"] = round(torch.stack(state["kl"]).float().mean().item(), 4)
            state["kl"] = []
        super().log(logs, *args, **kwargs)
