"""PromptTuner: the PEFT ``BaseTuner`` every prompt method subclasses."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import ClassVar

import torch
from peft.tuners.tuners_utils import BaseTuner
from torch import nn

from .classifier import PromptClassifierOutput, PromptCLIP
from .layers import PromptLayer
from .text import TextPromptContext


class PromptTuner(BaseTuner):
    """Wraps a ``CLIPModel`` in a :class:`PromptCLIP` and injects a method's prompt layers into it.

    A method subclass sets ``prefix`` (its parameter-name prefix, e.g. ``"coop_"``) and ``layer_classes`` (which
    layer class wraps which CLIP module, as regular expressions over module names), and may override
    :meth:`prepare_text_context` (per-pass inputs for its layers), :meth:`method_losses` (its own training losses)
    and :meth:`check_class_names`.

    ``get_peft_model(clip, config)`` and ``PeftModel.from_pretrained(clip, path)`` take the plain ``CLIPModel``; the
    wrapping happens here, and :meth:`unload` hands the plain ``CLIPModel`` back.
    """

    prefix: str = "prompt_"
    tuner_layer_cls = PromptLayer
    target_module_mapping: ClassVar[dict[str, list[str]]] = {}
    #: regular expression over a module's name (matched at its end) -> the layer class that wraps that module
    layer_classes: ClassVar[dict[str, type[PromptLayer]]] = {}
    #: whether the vision tower is untouched by the method, so image features can be computed once and trained from
    #: (``peft_dor.data.feature_cache``); False for methods with vision prompts (VPT, IVLP, MaPLe, PromptSRC)
    image_features_cacheable: ClassVar[bool] = False

    def __init__(self, model, peft_config, adapter_name: str, low_cpu_mem_usage: bool = False, state_dict=None):
        config = peft_config[adapter_name] if isinstance(peft_config, dict) else peft_config
        if not isinstance(model, PromptCLIP):
            model = PromptCLIP(model, config.class_names, config.template, config.tokenizer_name_or_path)
        model.attach_method(self)
        super().__init__(model, peft_config, adapter_name, low_cpu_mem_usage=low_cpu_mem_usage, state_dict=state_dict)

    # ------------------------------------------------------------------ injection
    def layer_class_for(self, key: str) -> type[PromptLayer]:
        for pattern, layer_cls in self.layer_classes.items():
            if re.fullmatch(rf"(?:.*\.)?{pattern}", key):
                return layer_cls
        raise ValueError(
            f"{type(self).__name__} has no prompt layer for module {key!r}; target one of the modules matching "
            f"{list(self.layer_classes)}."
        )

    def _create_and_replace(self, peft_config, adapter_name, target, target_name, parent, current_key, **kwargs):
        if isinstance(target, PromptLayer):
            target.update_layer(adapter_name, peft_config, self.model)
            return
        new_module = self.layer_class_for(current_key)(target)
        new_module._active_adapter = adapter_name
        new_module.update_layer(adapter_name, peft_config, self.model)
        self._replace_module(parent, target_name, new_module, target)
        if adapter_name not in self.active_adapters:
            new_module.requires_grad_(False)

    def _replace_module(self, parent, child_name, new_module, child) -> None:
        # PEFT's default assumes a Linear-like child with `.weight`; CLIP's embeddings and encoder layers are not.
        setattr(parent, child_name, new_module)

    def _post_injection_hook(self, model: nn.Module, config, adapter_name: str) -> None:
        # Tokenise every class prompt once now, so a name that does not fit the text tower fails before training.
        model.tokenize(model.class_names)
        self.check_class_names(model.class_names)

    def _check_merge_allowed(self) -> None:
        raise ValueError("Prompt adapters add tokens to CLIP's input; they cannot be merged into its weights.")

    def _unload_and_optionally_merge(self, merge: bool = True, **kwargs):
        if merge:
            self._check_merge_allowed()
        super()._unload_and_optionally_merge(merge=False, **kwargs)
        return self.model.clip

    def unload(self) -> nn.Module:
        """Remove every prompt layer and return the plain ``CLIPModel``."""
        return self._unload_and_optionally_merge(merge=False)

    # ------------------------------------------------------------------ classes
    def set_class_names(self, class_names: Sequence[str]) -> None:
        """Classify among ``class_names`` with the same learned prompts (e.g. the new classes of base-to-new)."""
        self.model.set_class_names(class_names)

    def check_class_names(self, class_names: Sequence[str]) -> None:
        """Raise ``ValueError`` if the active adapter cannot classify among ``class_names`` (method hook)."""
        self.model.tokenize(class_names)

    # ------------------------------------------------------------------ method hooks
    def active_config(self):
        return self.peft_config[self.active_adapters[0]]

    def prepare_text_context(self, context: TextPromptContext, wrapper: PromptCLIP) -> None:
        """Add per-pass inputs the method's layers need (e.g. TCP's class knowledge) to ``context.extras``."""

    def method_losses(self, output: PromptClassifierOutput, wrapper: PromptCLIP) -> dict[str, torch.Tensor]:
        """The method's own weighted training losses, e.g. ``{"kg": 8 * (1 - cos)}`` (empty by default)."""
        return {}
