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
from .tokenizer import prompt_name


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

    def _prepare_adapter_config(self, peft_config, model_config):
        # Runs inside every injection (get_peft_model, add_adapter, load_adapter) before any layer is built: an adapter
        # made for a CLIP of another size fails here with a clear message instead of a size-mismatch trace.
        peft_config.check_base_model(self.model.clip.config)
        return super()._prepare_adapter_config(peft_config, model_config)

    @classmethod
    def _remap_adapter_state_dict_for_load(cls, model, config, adapter_name, state_dict):
        # PEFT's load path (load_adapter, from_pretrained, Trainer's resume) only warns about missing tensors and
        # ignores unknown ones, which would leave random prompts behind; check before anything is copied.
        remapped = super()._remap_adapter_state_dict_for_load(model, config, adapter_name, state_dict)
        check_adapter_state_dict(model, adapter_name, remapped)
        return remapped

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
        """Raise ``ValueError`` if the active adapter cannot classify among ``class_names`` (method hook).

        Every learned prompt and every zero-shot prompt (each adapter's ``template``) must fit the text tower, every
        name must have tokens, and no two names may tokenise alike (CLIP's tokenizer normalises case, whitespace and
        Unicode composition: "café" typed with a combining accent is "café"; ``_`` is a space in the prompt).
        """
        wrapper = self.model
        wrapper.tokenize(class_names)
        tokenizer = wrapper.prompt_tokenizer
        seen: dict[tuple[int, ...], str] = {}
        for name in class_names:
            ids = tuple(tokenizer.piece_ids(prompt_name(name)))
            if not ids:
                raise ValueError(
                    f"The class name {name!r} has no tokens for CLIP's tokenizer, so its prompt would not name it. "
                    "Rename the class."
                )
            if ids in seen:
                raise ValueError(
                    f"`class_names` holds duplicates: {seen[ids]!r} and {name!r} give the same prompt (CLIP's "
                    "tokenizer normalises case, accents and whitespace). Give every class a distinct name."
                )
            seen[ids] = name
        for config in self.peft_config.values():
            tokenizer.template_prompts(class_names, config.template)

    # ------------------------------------------------------------------ method hooks
    def active_config(self):
        return self.peft_config[self.active_adapters[0]]

    def prepare_text_context(self, context: TextPromptContext, wrapper: PromptCLIP) -> None:
        """Add per-pass inputs the method's layers need (e.g. TCP's class knowledge) to ``context.extras``."""

    def method_losses(
        self,
        output: PromptClassifierOutput,
        wrapper: PromptCLIP,
        *,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """The method's own weighted training losses, e.g. ``{"kg": 8 * (1 - cos)}`` (empty by default).

        Called by the classifier's forward in training mode with its output and that forward's inputs
        (``pixel_values`` is None when the batch came as cached ``image_embeds``).
        """
        return {}


class DeepPromptTuner(PromptTuner):
    """A :class:`PromptTuner` whose config (a :class:`DeepPromptConfigMixin`) places prompts at a depth per tower."""

    def _prepare_adapter_config(self, peft_config, model_config):
        # Runs inside every injection (get_peft_model, add_adapter, load_adapter), before modules are matched.
        peft_config = super()._prepare_adapter_config(peft_config, model_config)
        peft_config.fit_to_model(self.model.clip.config)
        return peft_config


def adapter_tensor_shapes(model: nn.Module, adapter_name: str) -> dict[str, torch.Size]:
    """State-dict key -> shape of every prompt tensor of ``adapter_name`` in ``model`` (keys as in ``model``)."""
    shapes: dict[str, torch.Size] = {}
    for name, module in model.named_modules():
        if not isinstance(module, PromptLayer):
            continue
        for attr in module.adapter_layer_names:
            container = getattr(module, attr)
            if adapter_name not in container:
                continue
            key = f"{name}.{attr}.{adapter_name}" if name else f"{attr}.{adapter_name}"
            value = container[adapter_name]
            if isinstance(value, nn.Module):
                shapes.update({f"{key}.{sub}": tensor.shape for sub, tensor in value.state_dict().items()})
            else:
                shapes[key] = value.shape
    return shapes


def check_adapter_state_dict(model: nn.Module, adapter_name: str, state_dict: dict[str, torch.Tensor]) -> None:
    """Raise ``ValueError`` unless ``state_dict`` holds exactly the prompt tensors of ``adapter_name``, each with the
    model's shape: a missing tensor would stay randomly initialised, an unknown one would be ignored in silence.

    Args:
        model: the ``PeftModel`` (or module with injected prompt layers) being loaded into.
        adapter_name: the adapter the weights are for.
        state_dict: the adapter weights with the model's key names (after PEFT inserted the adapter name).
    """
    expected = adapter_tensor_shapes(model, adapter_name)
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mismatched = [
        f"{key}: file {tuple(state_dict[key].shape)} vs model {tuple(shape)}"
        for key, shape in sorted(expected.items())
        if key in state_dict and tuple(state_dict[key].shape) != tuple(shape)
    ]
    if not (missing or unexpected or mismatched):
        return

    def listing(items: list[str]) -> str:
        return ", ".join(items[:5]) + (f" (and {len(items) - 5} more)" if len(items) > 5 else "")

    problems = []
    if mismatched:
        problems.append(
            f"tensors of another shape: {listing(mismatched)}. The adapter was made for a CLIP of another width or "
            "with other prompt settings (n_ctx, vision_tokens, depth)"
        )
    if missing:
        problems.append(f"tensors missing from the file: {listing(missing)}; they would keep their random init")
    if unexpected:
        problems.append(f"tensors this model has no place for: {listing(unexpected)}")
    raise ValueError(
        f"The weights loaded for adapter {adapter_name!r} do not match its prompts: " + "; ".join(problems) + ". The "
        "file was edited, is incomplete or belongs to another model: save it again from the trained model, or load it "
        "with the config and base model it was trained with."
    )
