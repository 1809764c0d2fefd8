"""Hub upload with a model card that keeps PEFT's metadata.

Only the network layer is replaced: ``HfApi.create_repo`` and ``HfApi.upload_folder`` are monkeypatched to copy the
folder that would be uploaded into a local directory (the "Hub"). Saving, the card, and loading the pushed adapter
back with ``PeftModel.from_pretrained`` are all real.
"""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import pytest
import torch
from huggingface_hub import HfApi, ModelCard

from peft_dor.hub import bind_push_to_hub, build_model_card, push_to_hub, save_with_model_card

# PEFT looks up the recorded Hub base model when saving; offline it only warns.
pytestmark = pytest.mark.filterwarnings("ignore:Could not find a config file:UserWarning")

RESULTS = {
    "base": {"accuracy": 0.8, "ece": 0.03, "mce": 0.1, "ace": 0.02, "nll": 0.6},
    "new": {"accuracy": 0.6, "ece": 0.09},
    "hm": {"accuracy": 0.6857, "ece": 0.06},
}
DOR = {"weight": 8.0, "pool_size": 5000, "vocabulary": "wordnet", "resample": "step"}


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    """Replace the network calls of HfApi by a copy into tmp_path/hub/<repo_id>."""
    hub = tmp_path / "hub"
    calls = []

    def create_repo(self, repo_id, **kwargs):
        calls.append(("create_repo", repo_id, kwargs))
        return SimpleNamespace(repo_id=repo_id)

    def upload_folder(self, *, folder_path, repo_id, **kwargs):
        calls.append(("upload_folder", repo_id, kwargs))
        target = hub / repo_id
        shutil.copytree(folder_path, target, dirs_exist_ok=True)
        return SimpleNamespace(commit_url=f"file://{target}")

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    return SimpleNamespace(root=hub, calls=calls)


@pytest.fixture
def trained(tiny_clip, class_names):
    from peft import get_peft_model

    import peft_dor

    model = get_peft_model(tiny_clip, peft_dor.CoOpConfig(class_names=class_names, n_ctx=3, template="a {}."))
    with torch.no_grad():  # "training": move the context away from its init so the round trip is meaningful
        for param in model.parameters():
            if param.requires_grad:
                param.add_(torch.randn_like(param))
    # the recorded base model of a real run is a Hub id
    model.peft_config["default"].base_model_name_or_path = "openai/clip-vit-base-patch16"
    return model.eval()


def test_push_keeps_peft_metadata_and_adds_ours(fake_hub, trained, tmp_path, pixel_values, tiny_clip_path):
    results_file = tmp_path / "results.json"
    results_file.write_text("{}")
    commit = push_to_hub(
        trained,
        "user/coop-dor-demo",
        results=RESULTS,
        dor=DOR,
        dataset_name="dtd",
        extra_files={"results.json": results_file},
    )
    pushed = fake_hub.root / "user" / "coop-dor-demo"
    assert commit.commit_url.endswith("coop-dor-demo")
    assert sorted(p.name for p in pushed.iterdir()) == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
        "results.json",
    ]
    assert [c[0] for c in fake_hub.calls] == ["create_repo", "upload_folder"]

    card = ModelCard.load(pushed / "README.md")
    data = card.data.to_dict()
    assert data["library_name"] == "peft"
    assert data["base_model"] == "openai/clip-vit-base-patch16"
    assert {"peft-dor", "coop", "dor", "base_model:adapter:openai/clip-vit-base-patch16"} <= set(data["tags"])
    metrics = {m["name"]: m["value"] for m in data["model-index"][0]["results"][0]["metrics"]}
    assert metrics["base accuracy (%)"] == 80.0 and metrics["new ECE (%)"] == 9.0 and metrics["hm ECE (%)"] == 6.0
    text = card.text
    assert "`cat`, `dog`, `bird`, `horse`, `ship`" in text and "`a {}.`" in text
    assert "| weight | `8.0` |" in text and "- PEFT " in text
    assert 'PeftModel.from_pretrained(clip, "user/coop-dor-demo")' in text

    # loading the pushed adapter back gives a ready classifier with the trained prompts
    from peft import PeftModel
    from transformers import CLIPModel

    loaded = PeftModel.from_pretrained(CLIPModel.from_pretrained(tiny_clip_path), str(pushed)).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(pixel_values=pixel_values).logits, trained(pixel_values=pixel_values).logits)
    assert loaded.base_model.model.class_names == trained.base_model.model.class_names


def test_bound_push_to_hub_of_one_model(fake_hub, trained):
    bind_push_to_hub(trained, results=RESULTS, dataset_name="dtd")
    trained.push_to_hub("user/bound")
    data = ModelCard.load(fake_hub.root / "user" / "bound" / "README.md").data.to_dict()
    assert data["library_name"] == "peft" and "peft-dor" in data["tags"] and "dor" not in data["tags"]


def test_local_base_models_stay_out_of_the_metadata(tiny_clip, class_names, tmp_path, tiny_clip_path):
    from peft import get_peft_model

    import peft_dor

    model = get_peft_model(tiny_clip, peft_dor.CoOpConfig(class_names=class_names, n_ctx=2))
    out = save_with_model_card(model, tmp_path / "adapter")
    card = ModelCard.load(tmp_path / "adapter" / "README.md")
    assert card.data.library_name == "peft" and "base_model" not in card.data.to_dict()
    assert tiny_clip_path in card.text  # still named in the text
    assert (tmp_path / "adapter" / "adapter_model.safetensors").exists() and out == str(tmp_path / "adapter")


def test_existing_card_metadata_survives(trained, tmp_path):
    existing = tmp_path / "README.md"
    existing.write_text("---\nlicense: apache-2.0\nlibrary_name: peft\ntags:\n- mine\n---\n# old\n")
    card = build_model_card(trained, existing_card=existing, results=RESULTS)
    data = card.data.to_dict()
    assert data["license"] == "apache-2.0" and data["tags"][0] == "mine" and "coop" in data["tags"]
