"""Argument checks shared by every config: each raises ``ValueError`` naming the field and the fix."""

from __future__ import annotations

import math
from string import Formatter


def check_class_names(class_names) -> list[str]:
    """Return ``class_names`` as a list, or raise ``ValueError`` naming the problem (empty, not strings, two names
    that give the same prompt)."""
    if class_names is None or isinstance(class_names, str) or len(class_names) == 0:
        raise ValueError(
            f"`class_names` must be a non-empty list of strings, e.g. class_names=['cat', 'dog']; got {class_names!r}."
        )
    names = list(class_names)
    seen: dict[str, str] = {}
    for name in names:
        if not isinstance(name, str) or not name.replace("_", " ").strip():  # "_" is a space in the prompt
            raise ValueError(
                f"`class_names` must hold non-empty strings; got {name!r}. Remove or rename it (an underscore is a "
                "space in the prompt)."
            )
        # CLIP's tokenizer lower-cases and normalises whitespace, and "_" is a space in the prompt, so these would give
        # identical prompts.
        key = " ".join(name.replace("_", " ").casefold().split())
        if key in seen:
            raise ValueError(
                f"`class_names` holds duplicates: {seen[key]!r} and {name!r} give the same prompt. "
                "Give every class a distinct name."
            )
        seen[key] = name
    return names


def check_template(template: str, argument: str = "template") -> str:
    """Validate a hand-crafted template such as ``"a photo of a {}."``.

    The template must format with one name and nothing else: exactly one ``{}`` placeholder, no named or numbered
    fields (``{x}``, ``{0}``) and balanced braces (write a literal brace as ``{{`` or ``}}``).
    """
    fields = None
    if isinstance(template, str):
        try:
            fields = [
                (name, spec, conversion)
                for _, name, spec, conversion in Formatter().parse(template)
                if name is not None
            ]
        except ValueError:  # unbalanced braces, e.g. "a photo of a {}. }"
            fields = None
    if fields != [("", "", None)]:
        raise ValueError(
            f"`{argument}` must contain exactly one '{{}}' placeholder for the class name, e.g. 'a photo of a {{}}.'; "
            f"got {template!r}. Other braces must be doubled ('{{{{', '}}}}')."
        )
    return template


def check_number(value, argument: str, *, minimum: float = 0.0, strict: bool = False, hint: str = "") -> float:
    """Raise ``ValueError`` naming ``argument`` unless ``value`` is a finite real number ``>= minimum`` (``>`` when
    ``strict``); booleans are rejected. Returns the value.

    Example:
        ```python
        check_number(8.0, "kg_weight")                  # 8.0
        check_number(0.0, "ctx_std", strict=True)       # ValueError: `ctx_std` must be a finite number > 0; got 0.0.
        ```
    """
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > minimum if strict else value >= minimum)
    if not ok:
        relation = ">" if strict else ">="
        raise ValueError(f"`{argument}` must be a finite number {relation} {minimum:g}{hint}; got {value!r}.")
    return value


def check_depth(value, argument: str, minimum: int = 1) -> None:
    """Raise ``ValueError`` naming ``argument`` unless ``value`` is an integer of at least ``minimum``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"`{argument}` must be an integer >= {minimum}; got {value!r}.")


def check_pixel_values(pixel_values, vision_config, backbone_name: str, argument: str = "pixel_values") -> None:
    """Raise ``ValueError`` naming ``argument`` unless it is a ``(B, C, H, W)`` floating-point tensor with the
    vision tower's channels and image size (``vision_config``'s ``num_channels`` and ``image_size``)."""
    import torch

    channels, size = int(getattr(vision_config, "num_channels", 3)), int(vision_config.image_size)
    expected = f"(batch, {channels}, {size}, {size})"
    fix = (
        f"preprocess the images with the base model's {backbone_name} image processor "
        "(AutoImageProcessor.from_pretrained(<base model>))"
    )
    if not isinstance(pixel_values, torch.Tensor):
        raise ValueError(f"`{argument}` must be a torch.Tensor {expected}; got {type(pixel_values).__name__}: {fix}.")
    if not pixel_values.is_floating_point():
        raise ValueError(
            f"`{argument}` must hold floating-point pixel values {expected}; got dtype {pixel_values.dtype} "
            f"(raw 0-255 images?): {fix}."
        )
    if pixel_values.dim() != 4 or tuple(pixel_values.shape[1:]) != (channels, size, size):
        channels_last = pixel_values.dim() == 4 and pixel_values.shape[-1:] == (channels,)
        layout = " (channels last? use pixel_values.permute(0, 3, 1, 2))" if channels_last else ""
        raise ValueError(
            f"`{argument}` must be a 4-D tensor {expected}, channels first, at the model's image size; got shape "
            f"{tuple(pixel_values.shape)}{layout}: {fix}."
        )
