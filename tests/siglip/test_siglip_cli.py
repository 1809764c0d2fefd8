"""``peft-dor train`` / ``evaluate`` on a SigLIP folder: ``--model_name_or_path`` picks the backbone from its config,
the adapter reloads onto a ``SiglipModel`` and the model card names SigLIP."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from peft import PeftModel
from transformers import SiglipModel

from peft_dor import CoOpConfig
from peft_dor.hub import build_model_card

from ..cli.conftest import CLASSES, train_args

CLASSES_SORTED = sorted(CLASSES)


@pytest.fixture(scope="module")
def trained(image_folder, tiny_siglip_path, tmp_path_factory):
    from peft_dor.cli.train import main

    out = tmp_path_factory.mktemp("trained-siglip") / "out"
    main([str(a) for a in train_args(image_folder, tiny_siglip_path, out)[1:]])
    return out


def test_train_and_evaluate_a_siglip_adapter(run_cli, trained, image_folder, tiny_siglip_path, tmp_path):
    from peft_dor.data import CLIPImageTransform, load_image_folder, load_image_processor

    results = json.loads((trained / "results.json").read_text())
    assert results["base"]["n_samples"] > 0 and results["new"]["n_samples"] > 0
    card = (trained / "README.md").read_text()
    assert "prompts for SigLIP" in card and "SiglipModel.from_pretrained" in card and "siglip" in card

    out = tmp_path / "eval"
    code, stdout, err = run_cli("evaluate", "--adapter", trained, "--data_dir", image_folder, "--output_dir", out)
    assert code == 0, err
    evaluation = json.loads((out / "results.json").read_text())
    # independent reference: the adapter loaded by hand onto a SiglipModel, the images through SigLIP's processor
    model = PeftModel.from_pretrained(SiglipModel.from_pretrained(tiny_siglip_path), str(trained)).eval()
    model.set_class_names(CLASSES_SORTED)
    test = load_image_folder(image_folder)["test"]
    processor = load_image_processor(tiny_siglip_path)
    assert type(processor).__name__.startswith("SiglipImageProcessor")
    pixels = CLIPImageTransform(processor, train=False).pixel_values(test["image"])
    with torch.no_grad():
        logits = model(pixel_values=pixels).logits.numpy()
    accuracy = float((logits.argmax(-1) == np.asarray(test["label"])).mean())
    assert evaluation["test"]["accuracy"] == pytest.approx(accuracy)


def test_an_unsupported_backbone_is_refused_before_loading(run_cli, image_folder, tmp_path):
    folder = tmp_path / "blip"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "blip"}))
    code, _, err = run_cli(*train_args(image_folder, folder, tmp_path / "out"))
    assert code == 2
    assert "--model_name_or_path" in err and "model_type='blip'" in err and "SiglipModel" in err


def test_the_model_card_names_the_backbone(tiny_siglip_path, tmp_path):
    from peft import get_peft_model

    adapter = get_peft_model(SiglipModel.from_pretrained(tiny_siglip_path), CoOpConfig(class_names=CLASSES, n_ctx=2))
    adapter.peft_config["default"].base_model_name_or_path = "google/siglip-base-patch16-224"
    card = build_model_card(adapter)
    assert "siglip" in card.data.tags and "clip" not in card.data.tags
    assert 'siglip = SiglipModel.from_pretrained("google/siglip-base-patch16-224")' in card.text
    assert "the SigLIP weights are loaded" in card.text
