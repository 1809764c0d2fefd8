"""Registration with PEFT: one list, idempotent, namespaced values, and the error without `import peft_dor`."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from peft import PeftConfig, get_peft_model
from peft import mapping as peft_mapping
from transformers import CLIPModel

import peft_dor
from peft_dor.registry import METHODS, DorPeftType, method_classes


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
