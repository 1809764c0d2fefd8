"""The demo on the shipped world CLIP: results.json's layout, the mechanism DOR exists for, and bad input.

The mechanism test runs the demo with fewer epochs and test images than the default (to stay within CI's time), on
the demo's own split and seeds 1, 2, 3; nothing about the split or the seeds was chosen to make it pass.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from peft_dor.world.demo import main, method_names, run_demo
from peft_dor.world.experiment import world_split

FAST = {"epochs": 50, "test_per_class": 25}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    results = run_demo(out, verbose=False, **FAST)
    return out, results


def test_results_json_layout(demo):
    out, results = demo
    assert json.loads((out / "results.json").read_text()) == results
    assert list(results["summary"]) == ["zero_shot", "coop", "coop+dor"]
    for row in results["summary"].values():
        for split in ("base", "new", "hm"):
            assert set(row[split]) == {"accuracy", "accuracy_sd", "ece", "ece_sd"}
            assert 0.0 <= row[split]["accuracy"] <= 1.0 and 0.0 <= row[split]["ece"] <= 1.0
    assert sorted((r["method"], r["seed"]) for r in results["runs"]) == sorted(
        (m, s) for m in ("zero_shot", "coop", "coop+dor") for s in (1, 2, 3)
    )
    assert results["drift"]["zero_shot"]["new_cos_to_zero_shot"] == 1.0
    config = results["config"]
    assert config["epochs"] == FAST["epochs"] and config["seeds"] == [1, 2, 3]
    assert not set(config["dor_vocabulary"]) & set(config["base_classes"] + config["new_classes"])
    assert (out / "reliability_new.png").stat().st_size > 0 and (out / "drift.png").stat().st_size > 0


def test_hm_columns_follow_the_papers_aggregation(demo):
    _, results = demo
    for row in results["summary"].values():
        b, n = row["base"], row["new"]
        assert row["hm"]["accuracy"] == pytest.approx(
            2 * b["accuracy"] * n["accuracy"] / (b["accuracy"] + n["accuracy"])
        )
        assert row["hm"]["ece"] == pytest.approx((b["ece"] + n["ece"]) / 2)  # arithmetic, as the paper's ECE tables


def test_dor_keeps_new_classes_closer_to_zero_shot_and_better_calibrated(demo):
    _, results = demo
    drift, summary = results["drift"], results["summary"]
    assert drift["coop+dor"]["new_cos_to_zero_shot"] > drift["coop"]["new_cos_to_zero_shot"]
    assert summary["coop+dor"]["new"]["ece"] < summary["coop"]["new"]["ece"]


def test_near_pool_prefers_neighbours_of_the_base_classes(demo, world):
    _, results = demo
    split = world_split(world)
    pool = results["config"]["dor_pool"]["coop+dor"]
    rest = [n for n in split.vocabulary if n not in pool]

    def closeness(nouns):
        return np.mean([max(world.shared_attributes(n, b) for b in split.base) for n in nouns])

    assert len(pool) == results["config"]["pool_size"]
    assert closeness(pool) > closeness(rest)


def test_refuses_to_overwrite_results_before_any_work(tmp_path):
    (tmp_path / "results.json").write_text("{}")
    with pytest.raises(FileExistsError, match="--overwrite_output_dir"):
        run_demo(tmp_path)
    assert (tmp_path / "results.json").read_text() == "{}"


def test_bad_input_names_the_argument(tmp_path):
    with pytest.raises(ValueError, match="`methods`"):
        run_demo(tmp_path, methods=["coop", "cocoa"])
    with pytest.raises(ValueError, match="`epochs`"):
        run_demo(tmp_path, epochs=0)
    with pytest.raises(SystemExit):
        main(["--output_dir", str(tmp_path), "--methods", "cocoa"])
    assert not (tmp_path / "results.json").exists()


def test_method_names_put_coop_first():
    assert method_names(["tcp", "coop"]) == ["zero_shot", "coop", "coop+dor", "tcp", "tcp+dor"]


def test_extra_methods_run_the_same_way(tmp_path):
    # MaPLe prompts the vision tower, so it trains from pixels where CoOp trains from cached image features
    results = run_demo(tmp_path, methods=["maple"], seeds=[1], plots=False, verbose=False, epochs=1, test_per_class=2)
    assert list(results["summary"]) == ["zero_shot", "coop", "coop+dor", "maple", "maple+dor"]
    assert set(results["drift"]) == set(results["summary"])
    assert not (tmp_path / "reliability_new.png").exists()
