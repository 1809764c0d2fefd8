"""Multi-process DORTrainer run checked by ``test_ddp.py``: the suite's one torchrun launch
(``tests/reliability/_ddp_all_methods.py``) calls :func:`main` on both ranks.

Every rank writes the outliers it drew and its final learned context to the output folder, so the test can compare
the ranks. Usage: ``python _ddp_train.py MODEL_PATH OUTPUT_DIR``.
"""

from __future__ import annotations

import json
import os
import sys

import torch
from peft import get_peft_model
from safetensors.torch import save_file
from transformers import CLIPModel, TrainingArguments

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _toy_data import CLASS_NAMES, TOY_VOCABULARY, ImageCollator, color_dataset  # noqa: E402

import peft_dor  # noqa: E402
from peft_dor import DORConfig, DORTrainer  # noqa: E402


class RecordingTrainer(DORTrainer):
    def next_draw(self):
        draw = super().next_draw()
        self.draws = getattr(self, "draws", [])
        self.draws.append([self.state.global_step, self._draw_position[1], list(draw.names)])
        return draw


def main(model_path: str, output_dir: str) -> None:
    torch.set_num_threads(1)
    clip = CLIPModel.from_pretrained(model_path)
    model = get_peft_model(clip, peft_dor.CoOpConfig(class_names=CLASS_NAMES, ctx_init="a photo of a"))
    args = TrainingArguments(
        os.path.join(output_dir, "run"),
        max_steps=4,
        per_device_train_batch_size=5,
        gradient_accumulation_steps=2,
        learning_rate=0.05,
        logging_steps=2,
        remove_unused_columns=False,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
    )
    dor = DORConfig(vocabulary=TOY_VOCABULARY, pool_size=40, cache_dir=os.path.join(output_dir, "cache"))
    trainer = RecordingTrainer(
        model=model,
        args=args,
        train_dataset=color_dataset(CLASS_NAMES, per_class=6),
        data_collator=ImageCollator(model_path),
        dor=dor,
        optimizer_name="sgd",
    )
    trainer.train()
    rank = trainer.args.process_index
    ctx = trainer.prompt_model().clip.text_model.embeddings.coop_ctx["default"].detach().contiguous()
    save_file({"ctx": ctx}, os.path.join(output_dir, f"ctx-{rank}.safetensors"))
    report = {
        "world_size": trainer.args.world_size,
        "wrapper": type(trainer.model_wrapped).__name__,
        "find_unused_parameters": getattr(trainer.model_wrapped, "find_unused_parameters", None),
        "draws": trainer.draws,
        "pool": trainer.dor.pool.names,
        "logs": [entry for entry in trainer.state.log_history if "loss" in entry],
    }
    with open(os.path.join(output_dir, f"rank-{rank}.json"), "w") as handle:
        json.dump(report, handle)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
