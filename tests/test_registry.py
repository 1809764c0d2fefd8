"""Registration with PEFT: one list, idempotent, namespaced values, and the error without `import peft_dor`."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from peft import PeftConfig, get_peft_model
from peft import mapping as peft_mapping
from transformers import CLIPModel

import peft_dor
from peft_dor.registry import METHODS, DorPeftType, method_classes, method_spec


def test_every_method_is_in_the_three_peft_mappings():
    for key in METHODS:
        peft_type = DorPeftType[key]
        assert peft_type.value == f"DOR_{key}" and peft_type == f"DOR_{key}"
        config_cls, tuner_cls = method_classes(key)
        assert peft_mapping.PEFT_TYPE_TO_CONFIG_MAPPING[peft_type] is config_cls
        assert peft_mapping.PEFT_TYPE_TO_TUNER_MAPPING[peft_type] is tuner_cls
        assert peft_mapping.PEFT_TYPE_TO_PREFIX_MAPPING[peft_type] == tuner_cls.prefix
        # the JSON string finds the enum key: a str-Enum member hashes and compares equal to its value
        assert peft_mapping.PEFT_TYPE_TO_CONFIG_MAPPING[peft_type.value] is config_cls


def test_register_is_idempotent():
    before = dict(peft_mapping.PEFT_TYPE_TO_TUNER_MAPPING)
    peft_dor.register()
    peft_dor.register()
    assert dict(peft_mapping.PEFT_TYPE_TO_TUNER_MAPPING) == before


def test_peft_utilities_see_the_method(tiny_clip_path, class_names):
    model = get_peft_model(CLIPModel.from_pretrained(tiny_clip_path), peft_dor.CoOpConfig(class_names=class_names))
    status = model.get_model_status()
    assert status.peft_types == {"default": "COOP"}  # PEFT prints the member name, as for "LORA"
    assert status.trainable_params == 16 * 32
    assert model.get_layer_status()[0].module_type == "CoOpContextLayer"


def test_loading_without_import_peft_dor_fails_and_with_it_works(tiny_clip_path, class_names, tmp_path):
    get_peft_model(
        CLIPModel.from_pretrained(tiny_clip_path), peft_dor.CoOpConfig(class_names=class_names)
    ).save_pretrained(tmp_path)
    script = textwrap.dedent(
        f"""
        from peft import PeftConfig
        try:
            PeftConfig.from_pretrained({str(tmp_path)!r})
        except KeyError:
            print("KeyError before import")
        import peft_dor
        print(type(PeftConfig.from_pretrained({str(tmp_path)!r})).__name__)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["KeyError", "before", "import", "CoOpConfig"]
    assert isinstance(PeftConfig.from_pretrained(tmp_path), peft_dor.CoOpConfig)


def test_import_is_light():
    script = (
        "import sys, peft_dor; heavy = {'evaluate', 'nltk', 'matplotlib', 'datasets', 'transformers.trainer'};"
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_each_method_folder_declares_its_spec(tiny_clip_path, class_names):
    from peft_dor.registry import DEFAULT_DOR_WEIGHT, method_spec

    expected = {
        "COOP": ("CoOp", 8.0, "text"),
        "COCOOP": ("CoCoOp", 2.0, "text"),
        "KGCOOP": ("KgCoOp", 2.0, "text"),
        "TCP": ("TCP", 2.0, "text"),
        "PROGRAD": ("ProGrad", 2.0, "text"),
        "VPT": ("VPT", 2.0, "image"),
        "IVLP": ("IVLP", 2.0, "text"),
        "MAPLE": ("MaPLe", 2.0, "text"),
        "PROMPTSRC": ("PromptSRC", 2.0, "text"),
    }
    assert list(METHODS) == list(expected) and DEFAULT_DOR_WEIGHT == 2.0
    for key, (display, weight, side) in expected.items():
        spec = METHODS[key]
        assert (spec.display_name, spec.default_dor_weight, spec.dor_side) == (display, weight, side)
        assert method_spec(key.lower()) is method_spec(f"DOR_{key}") is method_spec(spec.config_class) is spec
    model = get_peft_model(CLIPModel.from_pretrained(tiny_clip_path), peft_dor.CoOpConfig(class_names=class_names))
    assert method_spec(model) is method_spec(model.get_base_model()) is method_spec(model.peft_config["default"])
    assert method_spec(peft_dor.PromptSRCConfig(class_names=class_names)).key == "PROMPTSRC"  # not its base, IVLP
    assert [f.name for f in __import__("dataclasses").fields(METHODS["PROMPTSRC"].options)] == ["gpa_mean", "gpa_std"]


def test_method_spec_names_the_known_methods():
    import pytest

    from peft_dor.registry import method_spec

    with pytest.raises(KeyError, match="coop, cocoop"):
        method_spec("lora")
    with pytest.raises(TypeError, match="not a peft-dor method"):
        method_spec(object())


def test_method_template_variants():
    # each method's templates live in its folder (tuners/<method>/templates.py), declared on its MethodSpec
    assert method_spec("kgcoop").template_for("dtd") == "a photo of a {}, a type of texture."
    assert method_spec("kgcoop").template_for("eurosat") == "a centered satellite photo of {}."  # not overridden
    assert method_spec("tcp").template_for("fgvc_aircraft") == "a photo of an aircraft {}."
    assert method_spec("tcp").template_for("food101") == "a photo of a {}, a type of food."
    assert method_spec("prograd").template_for("oxford_pets") == "a type of pet, a photo of a {}."
    assert method_spec("prograd").template_for("dtd") == "a texture of {}."
    assert method_spec("vpt").template_for("dtd") == "a photo of a {}."
    assert method_spec("coop").template_for(None) == method_spec("coop").template_for("x") == "a photo of a {}."
    assert {spec.name for spec in METHODS.values() if spec.templates is not None} == {
        "kgcoop",
        "tcp",
        "prograd",
        "vpt",
    }
    with pytest.raises(KeyError, match="Unknown method"):
        method_spec("nope").template_for("dtd")
