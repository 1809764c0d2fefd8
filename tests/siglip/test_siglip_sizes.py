"""Trainable parameters of every method at SigLIP-B/16's size, as docs/siglip.md states them.

The model is a ``SiglipModel`` of ``SiglipConfig()``'s default shapes (google/siglip-base-patch16-224's: text and
vision 768 wide, 12 layers each) built on the meta device, so nothing is downloaded or allocated.
"""

from __future__ import annotations

import copy

import pytest
import torch
from peft import get_peft_model
from transformers import SiglipConfig, SiglipModel

from peft_dor import (
    CoCoOpConfig,
    CoOpConfig,
    IVLPConfig,
    KgCoOpConfig,
    MaPLeConfig,
    ProGradConfig,
    PromptSRCConfig,
    TCPConfig,
    VPTConfig,
)
from peft_dor.testing import SIGLIP_B16_SIZE, build_tiny_siglip_tokenizer, tiny_siglip_config

#: docs/siglip.md's table (default configs)
EXPECTED = {
    CoOpConfig: 12_288,
    CoCoOpConfig: 77_616,
    KgCoOpConfig: 3_072,
    TCPConfig: 743_616,
    ProGradConfig: 12_288,
    VPTConfig: 6_144,
    IVLPConfig: 55_296,
    MaPLeConfig: 5_329_152,
    PromptSRCConfig: 55_296,
}


@pytest.fixture(scope="module")
def siglip_b16_config(tmp_path_factory):
    pytest.importorskip("sentencepiece")
    path = tmp_path_factory.mktemp("siglip-b16-tokenizer")
    tokenizer = build_tiny_siglip_tokenizer(workdir=path)
    tokenizer.save_pretrained(path)
    config = tiny_siglip_config(
        len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id, **copy.deepcopy(SIGLIP_B16_SIZE)
    )
    return config, str(path)


def test_the_size_is_siglip_configs_default():
    defaults = SiglipConfig().to_dict()
    for tower, sizes in SIGLIP_B16_SIZE.items():
        assert {key: defaults[tower][key] for key in sizes} == sizes


@pytest.mark.parametrize("config_cls", list(EXPECTED), ids=lambda cls: cls.__name__)
def test_trainable_parameters_at_siglip_b16_size(siglip_b16_config, config_cls):
    config, tokenizer_path = siglip_b16_config
    with torch.device("meta"):
        model = get_peft_model(
            SiglipModel(config), config_cls(class_names=["cat", "dog"], tokenizer_name_or_path=tokenizer_path)
        )
    assert model.get_nb_trainable_parameters()[0] == EXPECTED[config_cls]
