"""PromptCLIP: the classifier module PEFT wraps, whose forward turns images into class logits.

PEFT's ``PeftModel.forward`` calls the *base model's* forward, never the tuner's, so the classifier forward cannot
live on the tuner: it lives here, in a small module around the ``CLIPModel``. It deliberately has no ``.config``
attribute (transformers would mistake it for a ``PreTrainedModel``); the CLIP config is ``wrapper.clip.config``.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers.utils import ModelOutput

from .backbone import CLIP, SIGLIP, backbone, logit_bias, text_rules
from .checks import check_class_names, check_pixel_values, check_template
from .frozen import FrozenTextCache, autocast_key
from .layers import PromptLayer, TextContextLayer
from .text import TextPromptContext, TextTower
from .tokenizer import PromptTokenizer
from .vision import patches_pooled_only


@dataclass
class PromptClassifierOutput(ModelOutput):
    """Output of a prompt-tuned CLIP classifier.

    Attributes:
        loss: cross-entropy of ``logits`` against ``labels`` when labels were given (method losses and DOR are
            added by ``DORTrainer``, which logs each of them).
        logits: ``(batch, n_classes)`` scaled cosine similarities.
        image_embeds: ``(batch, D)`` L2-normalised image features.
        text_embeds: ``(n_classes, D)``, or ``(batch, n_classes, D)`` for image-conditioned prompts, L2-normalised.
        losses: named method losses (already weighted), e.g. ``{"kg": tensor}``; empty for plain CoOp.
        extra_text_embeds: prompted features of ``extra_names`` (DOR's outliers), shaped like ``text_embeds``.
        extra_image_embeds: prompted features of ``extra_pixel_values`` (image-side DOR).
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    image_embeds: torch.Tensor | None = None
    text_embeds: torch.Tensor | None = None
    losses: dict[str, torch.Tensor] | None = None
    extra_text_embeds: torch.Tensor | None = None
    extra_image_embeds: torch.Tensor | None = None


class PromptCLIP(nn.Module):
    """A ``CLIPModel`` (or ``SiglipModel``) turned into a classifier over a list of class names.

    Logits are ``logit_scale.exp() * cos``, plus the backbone's ``logit_bias`` where it has one (SigLIP).

    Args:
        clip: a ``transformers.CLIPModel`` or ``transformers.SiglipModel`` (any backbone of
            ``peft_dor.prompting.backbone``).
        class_names: the names to classify among.
        template: hand-crafted template for zero-shot features, e.g. ``"a photo of a {}."``.
        tokenizer_name_or_path: where to load the CLIP tokenizer from; defaults to ``clip.name_or_path``.

    Users rarely build this directly: ``get_peft_model(clip, CoOpConfig(...))`` does it.
    """

    def __init__(
        self,
        clip: nn.Module,
        class_names: Sequence[str],
        template: str = "a photo of a {}.",
        tokenizer_name_or_path: str | None = None,
    ) -> None:
        super().__init__()
        if not (hasattr(clip, "text_model") and hasattr(clip, "vision_model") and hasattr(clip, "logit_scale")):
            raise TypeError(
                f"peft-dor methods wrap a transformers `CLIPModel` or `SiglipModel`; got {type(clip).__name__}. Load "
                f"one with CLIPModel.from_pretrained('{CLIP.checkpoint}') or "
                f"SiglipModel.from_pretrained('{SIGLIP.checkpoint}')."
            )
        #: the backbone's facts (text rules, logit bias, joint width); raises TypeError for unsupported backbones
        self.backbone = backbone(clip)
        self.clip = clip
        self._class_names = list(class_names)
        self.template = template
        self.tokenizer_name_or_path = tokenizer_name_or_path
        #: encode at most this many prompts per text-tower call (None: all at once); bounds activation memory
        self.text_chunk_size: int | None = None
        #: recompute text-tower activations in backward instead of storing them (for many classes)
        self.text_checkpointing = False
        #: encode the prompt prefix every prompt of a pass shares once (exact; off only to compare or debug)
        self.share_text_prefix = True
        self._prompt_tokenizer: PromptTokenizer | None = None
        self._method_ref = None
        self._frozen_text = FrozenTextCache()
        self._class_feature_cache: tuple[tuple, torch.Tensor] | None = None

    # ------------------------------------------------------------------ set-up
    def attach_method(self, method) -> None:
        """Let the tuner (held by weak reference: it owns this module) supply per-pass inputs and method losses."""
        self._method_ref = weakref.ref(method)

    @property
    def method(self):
        return None if self._method_ref is None else self._method_ref()

    @property
    def class_names(self) -> list[str]:
        return list(self._class_names)

    def set_class_names(self, class_names: Sequence[str]) -> None:
        """Classify among ``class_names`` from now on, with the same learned prompts (base-to-new evaluation)."""
        names = check_class_names(class_names)
        method = self.method
        if method is not None:
            method.check_class_names(names)
        self._class_names = names
        self._class_feature_cache = None

    @property
    def prompt_tokenizer(self) -> PromptTokenizer:
        if self._prompt_tokenizer is None:
            from transformers import AutoTokenizer

            source = self.tokenizer_name_or_path or getattr(self.clip, "name_or_path", "")
            if not source:
                raise ValueError(
                    "The base model has no `name_or_path` to load its tokenizer from (was it built from a config?). "
                    "Set `tokenizer_name_or_path` in the method config, e.g. 'openai/clip-vit-base-patch16'."
                )
            tokenizer = AutoTokenizer.from_pretrained(source)
            context_length = self.clip.config.text_config.max_position_embeddings
            rules = text_rules(self.clip)
            self._prompt_tokenizer = PromptTokenizer(
                tokenizer, context_length, fixed_length=rules.fixed_length, backbone_name=self.backbone.name
            )
        return self._prompt_tokenizer

    @property
    def device(self) -> torch.device:
        return self.clip.logit_scale.device

    def prompt_layers(self) -> Iterator[PromptLayer]:
        return (m for m in self.modules() if isinstance(m, PromptLayer))

    # ------------------------------------------------------------------ text
    def _text_layer(self) -> TextContextLayer | None:
        layer = self.clip.text_model.embeddings
        return layer if isinstance(layer, TextContextLayer) else None

    def text_is_image_conditioned(self) -> bool:
        """Whether the active prompts depend on the image (CoCoOp): text features are then per image."""
        layer = self._text_layer()
        return bool(layer is not None and layer.conditions_on_image and layer.active_prompt_adapter())

    def tokenize(self, names: Sequence[str]):
        """Tokenise ``names`` with the active prompt layout, or with the template when prompts are off."""
        layer = self._text_layer()
        layout = None if layer is None else layer.layout()
        if layout is None:
            return self.prompt_tokenizer.template_prompts(names, self.template)
        return self.prompt_tokenizer.layout_prompts(names, layout)

    def _class_index(self, names: Sequence[str]) -> torch.LongTensor:
        position = {name: i for i, name in enumerate(self._class_names)}
        return torch.tensor([position.get(name, -1) for name in names], dtype=torch.long)

    def encode_text(
        self, names: Sequence[str] | None = None, image_features: torch.Tensor | None = None
    ) -> torch.Tensor:
        """L2-normalised features of ``names`` (default: the class names) under the active prompts.

        Returns ``(P, D)``, or ``(B, P, D)`` when the prompts are conditioned on ``image_features`` (CoCoOp).
        Prompts are encoded in chunks of ``text_chunk_size`` (all at once when None).
        """
        names = self.class_names if names is None else list(names)
        if not names:
            raise ValueError("`names` must hold at least one name to encode.")
        prompts = self.tokenize(names).to(self.device)
        context = TextPromptContext(prompts, self._class_index(names).to(self.device), image_features, names)
        method = self.method
        if method is not None:
            method.prepare_text_context(context, self)
        tower = TextTower(self.clip, share_prefix=self.share_text_prefix)
        chunk = self.text_chunk_size or len(names)
        pieces = []
        for start in range(0, len(names), chunk):
            sub = context.select(slice(start, start + chunk)) if chunk < len(names) else context
            features = tower(sub, checkpointing=self.text_checkpointing)
            pieces.append(features.reshape(-1, len(sub.prompts), features.shape[-1]))
        features = F.normalize(torch.cat(pieces, dim=1), dim=-1)
        conditioned = image_features is not None and self.text_is_image_conditioned()
        return features if conditioned else features[0]

    def compile_text_tower(self, **compile_kwargs) -> None:
        """Compile every CLIP text encoder layer with ``torch.compile`` (opt-in: not validated by PEFT for prompts).

        Compiles in place (``nn.Module.compile``), so parameter names, saving and loading are unchanged; prompt
        layers wrapping a CLIP layer stay eager around the compiled layer. ``compile_kwargs`` go to ``torch.compile``
        (e.g. ``dynamic=True``: prompt batches change length with the names).

        Example:
            ```python
            model.get_base_model().compile_text_tower(dynamic=True)
            ```
        """
        for layer in self.clip.text_model.encoder.layers:
            getattr(layer, "base_layer", layer).compile(**compile_kwargs)

    @contextmanager
    def prompts_suspended(self) -> Iterator[None]:
        """Run CLIP exactly as the base model (adapter disabled) inside this block."""
        layers = list(self.prompt_layers())
        previous = [layer.suspended for layer in layers]
        for layer in layers:
            layer.suspended = True
        try:
            yield
        finally:
            for layer, state in zip(layers, previous, strict=True):
                layer.suspended = state

    @torch.no_grad()
    def frozen_text_features(
        self,
        names: Sequence[str] | None = None,
        template: str | None = None,
        *,
        normalize: bool = True,
        cache: str | None = "list",
        batch_size: int | None = None,
        device: torch.device | str | None = None,
        progress: str | None = None,
    ) -> torch.Tensor:
        """Frozen CLIP's features of ``template.format(name)`` (adapter disabled): the one frozen-features API.

        Prompts run in batches of similar length through the base model with every prompt layer suspended, under the
        caller's autocast (part of the cache key); the result is float32. See ``peft_dor.prompting.frozen``.

        Args:
            names: names to encode; defaults to the class names.
            template: defaults to the model's template.
            normalize: False returns the projected features before L2 normalisation (PromptSRC averages those over
                templates).
            cache: ``"list"`` keeps the result for this exact name list (class names); ``"names"`` keeps one row per
                name, each new name encoded on its own (names drawn afresh each step); None keeps nothing (one-off
                lists, e.g. a whole vocabulary).
            batch_size: prompts per text-tower pass; default ``text_chunk_size`` (all at once when None).
            device: where the result goes; default the model's device.
            progress: a progress-bar label, or None for no bar.

        Example:
            ```python
            targets = wrapper.frozen_text_features(["lamp", "tree"], "a photo of a {}.", cache="names")  # (2, D)
            ```
        """
        names = self.class_names if names is None else list(names)
        template = check_template(self.template if template is None else template)
        return self._frozen_text(
            self,
            names,
            template,
            normalize=normalize,
            cache=cache,
            batch_size=batch_size,
            device=device,
            progress=progress,
        )

    def zero_shot_text_features(
        self,
        names: Sequence[str] | None = None,
        template: str | None = None,
        cache: bool = True,
        normalize: bool = True,
    ) -> torch.Tensor:
        """Frozen CLIP's L2-normalised features of ``template.format(name)`` (adapter disabled), cached per name list:
        :meth:`frozen_text_features` with ``cache="list"`` (``cache=False``: nothing kept).

        Args:
            names: names to encode; defaults to the class names.
            template: defaults to the model's template.
            cache: keep the result for the next call with the same names; pass False for one-off name lists.
            normalize: False returns the projected features before L2 normalisation.
        """
        return self.frozen_text_features(names, template, normalize=normalize, cache="list" if cache else None)

    # ------------------------------------------------------------------ images
    def check_pixel_values(self, pixel_values, argument: str = "pixel_values") -> None:
        """Raise ``ValueError`` naming ``argument`` unless it is a ``(B, C, H, W)`` floating-point tensor with the
        vision tower's channels and image size (before transformers would fail with a shape error deep inside)."""
        check_pixel_values(pixel_values, self.clip.config.vision_config, backbone(self.clip).name, argument)

    def encode_image(
        self,
        pixel_values: torch.Tensor | None = None,
        image_embeds: torch.Tensor | None = None,
        argument: str = "pixel_values",
    ):
        """L2-normalised image features from pixels (through any vision prompts) or from precomputed embeddings.

        ``pixel_values`` are checked first (:meth:`check_pixel_values`; ``argument`` names them in the error)."""
        if image_embeds is not None and any(
            layer.active_prompt_adapter() is not None
            for layer in self.clip.vision_model.modules()
            if isinstance(layer, PromptLayer)
        ):
            raise ValueError(
                "`image_embeds` skips the vision tower, but the active adapter prompts it (VPT, IVLP, MaPLe, "
                "PromptSRC), so cached features would silently drop the visual prompts; pass `pixel_values` instead."
            )
        if image_embeds is None:
            if pixel_values is None:
                raise ValueError(
                    "Pass `pixel_values` (preprocessed images, (B, 3, H, W)) or `image_embeds` (cached projected "
                    "image features, (B, D))."
                )
            self.check_pixel_values(pixel_values, argument)
            with patches_pooled_only(self.clip.vision_model, pixel_values, self.backbone.vision_pooling):
                image_embeds = self.clip.get_image_features(pixel_values=pixel_values).pooler_output
        return F.normalize(image_embeds, dim=-1)

    @torch.no_grad()
    def zero_shot_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Frozen CLIP's L2-normalised image features (vision prompts off)."""
        with self.prompts_suspended():
            return self.encode_image(pixel_values)

    # ------------------------------------------------------------------ classification
    def _prompt_state(self) -> tuple:
        """Everything that changes the class text features: names, active adapters and each prompt tensor's version."""
        state = [tuple(self._class_names), self.template]
        for layer in self.prompt_layers():
            state.append((id(layer), layer.active_prompt_adapter()))
            for name, param in layer.named_parameters():
                if not name.startswith("base_layer."):
                    state.append((id(param), param._version))
        state.append(autocast_key(self.device))
        return tuple(state)

    def _can_cache_class_features(self) -> bool:
        if self.training or self.text_is_image_conditioned():
            return False
        if not torch.is_grad_enabled():
            return True
        return not any(p.requires_grad for layer in self.prompt_layers() for p in layer.parameters())

    def class_text_features(self, image_features: torch.Tensor | None = None) -> torch.Tensor:
        """Features of the class prompts; in eval mode cached until a prompt tensor, adapter or class list changes."""
        if not any(isinstance(m, PromptLayer) for m in self.clip.text_model.modules()):
            return self.zero_shot_text_features()  # vision-only methods (VPT): frozen text, encoded once
        if not self._can_cache_class_features():
            return self.encode_text(self.class_names, image_features)
        key = self._prompt_state()
        if self._class_feature_cache is None or self._class_feature_cache[0] != key:
            with torch.no_grad():
                self._class_feature_cache = (key, self.encode_text(self.class_names))
        return self._class_feature_cache[1]

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        *,
        image_embeds: torch.Tensor | None = None,
        extra_names: Sequence[str] | None = None,
        extra_pixel_values: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> PromptClassifierOutput:
        """Classify images among the class names.

        Args:
            pixel_values: ``(B, 3, H, W)`` images preprocessed with the CLIP image processor.
            labels: ``(B,)`` class indices; when given, ``loss`` is the cross-entropy.
            image_embeds: ``(B, D)`` precomputed projected image features instead of ``pixel_values``.
            extra_names: names whose prompted text features are returned as ``extra_text_embeds`` (DOR's outliers),
                encoded in the same text pass as the classes.
            extra_pixel_values: images whose prompted features are returned as ``extra_image_embeds``.

        Example:
            ```python
            out = model(pixel_values=x, labels=y)
            out.logits.shape  # (B, n_classes)
            ```
        """
        image = self.encode_image(pixel_values, image_embeds)
        n_classes = len(self._class_names)
        extra = list(extra_names or [])
        if extra:
            text_all = self.encode_text(self.class_names + extra, image)
            text, extra_text = text_all[..., :n_classes, :], text_all[..., n_classes:, :]
        else:
            text, extra_text = self.class_text_features(image), None
        scale = self.clip.logit_scale.exp()
        if text.dim() == 3:
            logits = scale * torch.einsum("bd,bcd->bc", image, text.to(image.dtype))
        else:
            logits = scale * image @ text.to(image.dtype).t()
        bias = logit_bias(self.clip)
        if bias is not None:  # SigLIP's learned bias; CLIP has none (backbone data)
            logits = logits + bias
        loss = None
        if labels is not None:
            labels = torch.as_tensor(labels).to(logits.device)
            if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
                raise TypeError(
                    f"`labels` must hold integer class indices (torch.long); got dtype {labels.dtype}. Convert them "
                    "with labels.long() (one-hot or soft targets are not supported)."
                )
            if labels.shape != logits.shape[:1]:
                raise ValueError(
                    f"`labels` must have one class index per image, shape ({logits.shape[0]},); got shape "
                    f"{tuple(labels.shape)}."
                )
            if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= n_classes):
                raise ValueError(
                    f"`labels` must lie in [0, {n_classes}) for the {n_classes} class names; got values in "
                    f"[{int(labels.min())}, {int(labels.max())}]. Check the dataset's label column against "
                    "class_names (set_class_names after switching to new classes)."
                )
            loss = F.cross_entropy(logits.float(), labels.long())
        extra_image = None
        if extra_pixel_values is not None:
            extra_image = self.encode_image(extra_pixel_values, argument="extra_pixel_values")
        output = PromptClassifierOutput(
            loss=loss,
            logits=logits,
            image_embeds=image,
            text_embeds=text,
            losses={},
            extra_text_embeds=extra_text,
            extra_image_embeds=extra_image,
        )
        method = self.method
        if method is not None and self.training:
            output.losses = method.method_losses(output, self, pixel_values=pixel_values, labels=labels)
        return output if return_dict else output.to_tuple()
