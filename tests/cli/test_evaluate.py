"""``peft-dor evaluate``: a saved adapter on an image folder, checked against logits computed by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from .conftest import CLASSES, train_args


@pytest.fixture(scope="module")
def trained(image_folder, tiny_clip_path, tmp_path_factory):
    from peft_dor.cli.train import main

    out = tmp_path_factory.mktemp("trained") / "out"
    main([str(a) for a in train_args(image_folder, tiny_clip_path, out)[1:]])
    return out


def test_evaluates_a_saved_adapter_on_every_class_of_a_folder(run_cli, trained, image_folder, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import CLIPModel

    from peft_dor.data import CLIPImageTransform, load_image_folder, load_image_processor

    out = tmp_path / "eval"
    code, stdout, err = run_cli("evaluate", "--adapter", trained, "--data_dir", image_folder, "--output_dir", out)
    assert code == 0, err
    results = json.loads((out / "results.json").read_text())
    assert results["class_names"] == CLASSES_SORTED and results["test"]["n_samples"] == 2 * len(CLASSES)
    assert (out / "reliability_test.png").read_bytes()[:4] == b"\x89PNG"
    assert "accuracy" in stdout and "ece" in stdout

    # independent reference: the adapter loaded by hand, the test images through the processor, argmax
    base = json.loads((trained / "adapter_config.json").read_text())["base_model_name_or_path"]
    model = PeftModel.from_pretrained(CLIPModel.from_pretrained(base), str(trained)).eval()
    model.set_class_names(CLASSES_SORTED)
    test = load_image_folder(image_folder)["test"]
    transform = CLIPImageTransform(load_image_processor(base), train=False)
    pixels = transform.pixel_values(test["image"])
    with torch.no_grad():
        logits = model(pixel_values=pixels).logits.numpy()
    accuracy = float((logits.argmax(-1) == np.asarray(test["label"])).mean())
    assert results["test"]["accuracy"] == pytest.approx(accuracy)


CLASSES_SORTED = sorted(CLASSES)


def test_evaluate_refuses_a_folder_without_an_adapter(run_cli, image_folder, tmp_path):
    code, _, err = run_cli("evaluate", "--adapter", tmp_path, "--data_dir", image_folder)
    assert code == 2 and "adapter_config.json" in err and len(err.strip().splitlines()) == 1


def test_evaluate_never_overwrites_results(run_cli, trained, image_folder, tmp_path):
    (tmp_path / "results.json").write_text("{}")
    code, _, err = run_cli("evaluate", "--adapter", trained, "--data_dir", image_folder, "--output_dir", tmp_path)
    assert code == 2 and "--overwrite_output_dir" in err
    assert (tmp_path / "results.json").read_text() == "{}"
