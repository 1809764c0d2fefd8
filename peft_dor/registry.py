"""Registration of peft-dor's methods with PEFT, and what each method declares about itself.

PEFT 0.21's own ``register_peft_method`` only accepts names that already exist in ``peft.PeftType``, and that enum
cannot be extended. We therefore keep our own ``str`` enum, whose members hash and compare equal to their values, and
insert each method into PEFT's three lookup tables. Values are namespaced (``DOR_COOP``) so that a future upstream
``COOP`` can never collide with ours.

Everything a method owns lives in its folder ``peft_dor/tuners/<method>/``, whose ``__init__.py`` makes one call,
:func:`register_method`, with a :class:`MethodSpec`: its config and tuner classes, display name, DOR defaults, the
Trainer mixins and callbacks its training needs, the options a command line exposes for it and its own templates.
The rest of the package asks :func:`method_spec` and never names a method. The one list of method folders is
``peft_dor.tuners.METHOD_PACKAGES``: adding a method is a new folder and one entry there.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import importlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .tuners import METHOD_PACKAGES

DorPeftType = enum.Enum("DorPeftType", {name.upper(): f"DOR_{name.upper()}" for name in METHOD_PACKAGES}, type=str)
DorPeftType.__doc__ = "PEFT types of the methods shipped by peft-dor (values are namespaced with ``DOR_``)."

#: DOR's λ for a method that does not declare its own (the DOR paper: 2 for every method but CoOp)
DEFAULT_DOR_WEIGHT = 2.0
DOR_SIDES = ("text", "image")


@dataclass(frozen=True)
class MethodSpec:
    """What a method declares about itself; made in its folder's ``__init__.py`` and passed to :func:`register_method`.

    Attributes:
        key: the ``DorPeftType`` name, e.g. ``"COOP"`` (the folder name upper-cased).
        config_class: its ``PeftConfig`` subclass.
        tuner_class: its ``PromptTuner`` subclass.
        display_name: how the paper spells it (``"CoOp"``), for model cards, logs and tables.
        default_dor_weight: DOR's λ when ``DORConfig.weight`` is None.
        dor_side: which features DOR regularises by default: ``"text"`` (outlier words) or ``"image"`` (outlier
            images, for methods without text prompts such as VPT).
        trainer_mixins: ``transformers.Trainer`` mixins its training needs, put in front of ``DORTrainer``'s bases
            (ProGrad's gradient projection); ``DORTrainer`` on a model of this method composes them itself.
        callbacks: ``callbacks(options) -> list[TrainerCallback]``, the callbacks its training needs (PromptSRC's
            prompt aggregation), given an instance of ``options``; ``DORTrainer`` adds them unless the user passed a
            callback of the same class.
        options: a dataclass of the method's training options that a command line exposes (``field`` metadata
            ``help`` on each), or None.
        templates: its hand-crafted templates, if they differ from the canonical ones: a per-dataset table of
            overrides keyed by Dassl dataset name (``{"DescribableTextures": "a texture of {}."}``; datasets not
            listed keep the canonical template), one template for every dataset (a ``str``), or None.

    Example:
        ```python
        register_method(MethodSpec("COOP", CoOpConfig, CoOpModel, "CoOp", default_dor_weight=8.0))
        method_spec(model).display_name  # 'CoOp'
        ```
    """

    key: str
    config_class: type
    tuner_class: type
    display_name: str
    default_dor_weight: float = DEFAULT_DOR_WEIGHT
    dor_side: str = "text"
    trainer_mixins: tuple[type, ...] = ()
    callbacks: Callable[[Any], list] | None = None
    options: type | None = None
    templates: Mapping[str, str] | str | None = None

    def __post_init__(self) -> None:
        if self.key not in DorPeftType.__members__:
            raise ValueError(
                f"MethodSpec key {self.key!r} has no DorPeftType member; add the method's folder name to "
                "peft_dor.tuners.METHOD_PACKAGES."
            )
        if self.dor_side not in DOR_SIDES:
            raise ValueError(f"`dor_side` must be one of {DOR_SIDES}; got {self.dor_side!r}.")
        if self.templates is not None and not isinstance(self.templates, (str, Mapping)):
            raise TypeError(
                f"`templates` must be a dict of Dassl dataset name -> template, a str or None; got {self.templates!r}."
            )
        if self.options is not None and not dataclasses.is_dataclass(self.options):
            raise TypeError(f"`options` must be a dataclass type or None; got {self.options!r}.")

    @property
    def peft_type(self) -> DorPeftType:
        return DorPeftType[self.key]

    @property
    def name(self) -> str:
        """The lower-case method name used on the command line and in folder names (``"coop"``)."""
        return self.key.lower()

    def template_for(self, dataset: str | None) -> str:
        """The method's hand-crafted template of ``dataset`` (a registry or Dassl name): its own where it declares
        one, else the canonical one (``peft_dor.data.templates.template_for``)."""
        from .data.templates import template_for

        if isinstance(self.templates, str):
            return self.templates
        return template_for(dataset, overrides=self.templates)

    def default_options(self) -> Any:
        """An instance of :attr:`options` with its defaults, or None when the method has none."""
        return None if self.options is None else self.options()

    def make_options(self, options: Any = None) -> Any:
        """An instance of :attr:`options` from ``options`` (None: the defaults, a dict of fields, or an instance);
        ``ValueError`` names unknown fields, and options given to a method that has none."""
        if options is None:
            return self.default_options()
        if self.options is None:
            raise ValueError(f"{self.display_name} has no training options; drop `method_options`.")
        if isinstance(options, self.options):
            return options
        if not isinstance(options, dict):
            raise TypeError(
                f"`method_options` must be a dict or a {self.options.__name__}; got {type(options).__name__}."
            )
        known = {f.name for f in dataclasses.fields(self.options)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(
                f"`method_options` has {unknown}, which {self.display_name} does not take; it takes {sorted(known)}."
            )
        return self.options(**options)

    def training_callbacks(self, options: Any = None) -> list:
        """The callbacks the method's training needs, built from ``options`` (default: :meth:`default_options`)."""
        if self.callbacks is None:
            return []
        return list(self.callbacks(self.default_options() if options is None else options))


_SPECS: dict[str, MethodSpec] = {}


class _Methods(Mapping):
    """Read-only view ``key -> MethodSpec`` of every registered method (importing ``peft_dor`` registers them all)."""

    def __getitem__(self, key: str) -> MethodSpec:
        return _SPECS[key]

    def __iter__(self) -> Iterator[str]:
        return (key for key in DorPeftType.__members__ if key in _SPECS)  # METHOD_PACKAGES' order

    def __len__(self) -> int:
        return len(_SPECS)


#: every registered method, ``{"COOP": MethodSpec(...), ...}``, in registration order
METHODS: Mapping[str, MethodSpec] = _Methods()


def register_method(spec: MethodSpec) -> MethodSpec:
    """Record ``spec`` (a method folder's one registration call) and insert it into PEFT's mappings. Idempotent."""
    known = _SPECS.get(spec.key)
    if known is not None and known.config_class is not spec.config_class:
        raise ValueError(f"A method is already registered as {spec.key!r} ({known.config_class.__name__}).")
    _SPECS[spec.key] = spec
    _insert_into_peft(spec)
    return spec


def _insert_into_peft(spec: MethodSpec) -> None:
    from peft import mapping

    mapping.PEFT_TYPE_TO_CONFIG_MAPPING.setdefault(spec.peft_type, spec.config_class)
    mapping.PEFT_TYPE_TO_TUNER_MAPPING.setdefault(spec.peft_type, spec.tuner_class)
    mapping.PEFT_TYPE_TO_PREFIX_MAPPING.setdefault(spec.peft_type, spec.tuner_class.prefix)


def register() -> None:
    """Insert every method into PEFT's mappings. Safe to call any number of times."""
    for package in METHOD_PACKAGES:
        importlib.import_module(f"peft_dor.tuners.{package}")  # each folder registers itself on import
    for spec in _SPECS.values():
        _insert_into_peft(spec)


def method_classes(key: str) -> tuple[type, type]:
    """Return ``(config_class, tuner_class)`` of the method registered under ``key`` (e.g. ``"COOP"``)."""
    spec = method_spec(key)
    return spec.config_class, spec.tuner_class


def _config_of(thing):
    """The active adapter's config of a model (``PeftModel``, DDP wrapper, tuner, ``PromptCLIP``), or ``thing``."""
    for _ in range(8):
        if isinstance(thing, _config_types()):
            return thing
        peft_config = getattr(thing, "peft_config", None)
        if isinstance(peft_config, dict) and peft_config:
            active = getattr(thing, "active_adapter", None)
            if not isinstance(active, str):
                active = getattr(thing, "active_adapters", [None])[0]
            return peft_config.get(active) or next(iter(peft_config.values()))
        method = getattr(thing, "method", None)  # PromptCLIP holds its tuner
        if method is not None and hasattr(method, "peft_config"):
            thing = method
        elif hasattr(thing, "module"):  # DDP and friends
            thing = thing.module
        else:
            return thing
    return thing


def _config_types() -> tuple[type, ...]:
    return tuple(spec.config_class for spec in _SPECS.values())


def method_spec(method) -> MethodSpec:
    """The :class:`MethodSpec` of ``method``: a key or name (``"COOP"``, ``"coop"``, ``"DOR_COOP"``), a config (or its
    class), or a prompt model (``PeftModel``, DDP wrapper, tuner or ``PromptCLIP``; its active adapter's method).

    Raises:
        KeyError: an unknown name, naming the registered ones.
        TypeError: an object that is neither a name, a peft-dor config nor a peft-dor model.

    Example:
        ```python
        spec = method_spec(model)
        spec.display_name, spec.default_dor_weight, spec.dor_side  # ('CoOp', 8.0, 'text')
        ```
    """
    if isinstance(method, MethodSpec):
        return method
    if isinstance(method, str):
        key = str(getattr(method, "value", method)).upper().removeprefix("DOR_")
        if key not in _SPECS:
            raise KeyError(f"Unknown method {method!r}; choose one of: {', '.join(k.lower() for k in METHODS)}.")
        return _SPECS[key]
    config = method if isinstance(method, type) else _config_of(method)
    for spec in _SPECS.values():  # the exact class first: PromptSRCConfig subclasses IVLPConfig
        if type(config) is spec.config_class or config is spec.config_class:
            return spec
    peft_type = getattr(config, "peft_type", None)
    if isinstance(peft_type, str) and str(getattr(peft_type, "value", peft_type)).removeprefix("DOR_") in _SPECS:
        return method_spec(str(getattr(peft_type, "value", peft_type)))
    raise TypeError(
        f"{type(method).__name__} is not a peft-dor method, config or prompt model; build the model with "
        "get_peft_model(clip, peft_dor.CoOpConfig(...)) (or another method's config)."
    )


def method_spec_or_none(model) -> MethodSpec | None:
    """:func:`method_spec` of a model, or None for None and for objects that are no peft-dor model."""
    if model is None:
        return None
    try:
        return method_spec(model)
    except TypeError:
        return None


def trainer_class_for(cls: type, model) -> type:
    """``cls`` (a ``transformers.Trainer`` subclass) with the Trainer mixins ``model``'s method declares in front of its
    bases, e.g. ``ProGradMixin`` + ``DORTrainer`` for a ProGrad model; ``cls`` itself when nothing is missing."""
    spec = method_spec_or_none(model)
    missing = tuple(m for m in (spec.trainer_mixins if spec else ()) if not issubclass(cls, m))
    return _with_mixins(cls, missing) if missing else cls


@functools.cache
def _with_mixins(cls: type, mixins: tuple[type, ...]) -> type:
    # cached, so one run builds each combination once and isinstance checks see one class
    name = "".join(m.__name__.removesuffix("Mixin") for m in mixins) + cls.__name__
    return type(name, (*mixins, cls), {"__module__": cls.__module__, "__doc__": cls.__doc__})


__all__ = [
    "DEFAULT_DOR_WEIGHT",
    "METHODS",
    "DorPeftType",
    "MethodSpec",
    "method_classes",
    "method_spec",
    "method_spec_or_none",
    "register",
    "register_method",
    "trainer_class_for",
]
