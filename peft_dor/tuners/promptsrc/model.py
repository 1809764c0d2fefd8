from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ...prompting import PromptClassifierOutput, PromptCLIP, autocast_key, prompt_name
from ..ivlp.model import IVLPModel

#: how many teacher prompts one frozen text pass encodes at most (bounds the one-off memory for many classes)
PROMPTS_PER_PASS = 2048


def template_ensemble_features(wrapper: PromptCLIP, names: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
    """Frozen CLIP's text features of ``names`` averaged over ``templates`` *before* normalising, then normalised.

    This is PromptSRC's text target (CLIP's own prompt ensembling averages normalised features instead). Several
    templates share one pass of the frozen text tower (up to :data:`PROMPTS_PER_PASS` prompts, or
    ``wrapper.text_chunk_size`` when set); nothing is cached here.

    Example:
        ```python
        target = template_ensemble_features(model.get_base_model(), ["cat", "dog"], ["a photo of a {}.", "art of a {}."])
        ```
    """
    names, templates = list(names), list(templates)
    per_pass = max(1, PROMPTS_PER_PASS // len(names))
    total = 0
    for start in range(0, len(templates), per_pass):
        texts = [template.format(prompt_name(n)) for template in templates[start : start + per_pass] for n in names]
        # "{}" formats to the finished text itself; no cache: the caller keeps only the mean
        features = wrapper.frozen_text_features(texts, "{}", normalize=False, cache=None)
        total = total + features.reshape(-1, len(names), features.shape[-1]).sum(dim=0)
    return F.normalize(total / len(templates), dim=-1)


class PromptSRCModel(IVLPModel):
    """PEFT tuner for PromptSRC; build it with ``get_peft_model(clip, PromptSRCConfig(...))``.

    The prompt layers, and so the parameter names (``ivlp_*``), are IVLP's; PromptSRC adds its self-regulating
    losses, computed inside the model's one forward in training mode.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # (class names, templates, device, autocast dtype) -> the text target; frozen, so never invalidated
        self._teacher_cache: dict[tuple, torch.Tensor] = {}

    def teacher_text_features(self, wrapper: PromptCLIP) -> torch.Tensor:
        """Normalised mean frozen text features of the class names over the config's teacher templates (cached)."""
        templates = self.active_config().templates()
        key = (tuple(wrapper.class_names), templates, wrapper.device, autocast_key(wrapper.device))
        if key not in self._teacher_cache:
            self._teacher_cache[key] = template_ensemble_features(wrapper, wrapper.class_names, templates)
        return self._teacher_cache[key]

    def method_losses(
        self, output: PromptClassifierOutput, wrapper: PromptCLIP, *, pixel_values=None, labels=None
    ) -> dict[str, torch.Tensor]:
        if pixel_values is None:
            raise ValueError(
                "PromptSRC's training losses compare the prompted image features with the frozen encoder's, so "
                "training needs `pixel_values` (precomputed `image_embeds` skip the vision prompts)."
            )
        config = self.active_config()
        text_target = self.teacher_text_features(wrapper)
        image_target = wrapper.zero_shot_image_features(pixel_values).float()
        logits = output.logits.float()
        zero_shot_logits = wrapper.clip.logit_scale.exp().float() * image_target @ text_target.t()
        kl = F.kl_div(
            F.log_softmax(logits, dim=-1), F.log_softmax(zero_shot_logits, dim=-1), reduction="sum", log_target=True
        )
        return {
            "src_text": config.text_loss_weight * F.l1_loss(output.text_embeds.float(), text_target),
            "src_image": config.image_loss_weight * F.l1_loss(output.image_embeds.float(), image_target),
            "src_logits": config.logits_loss_weight * kl / logits.numel(),
        }
