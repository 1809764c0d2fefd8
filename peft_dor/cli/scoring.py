"""The evaluation ``peft-dor train`` runs after training, as ``--task`` says: base and new classes, the few-shot
test set, or the domain-generalisation source and targets."""

from __future__ import annotations


def evaluate_run(command, trainer, model, train_side, new_side, test_set, progress, results):
    """Evaluate the trained model as the task says; fills ``results`` and returns ``(evaluation, plots)``."""
    from ..data import load_coop_benchmark
    from ..evaluation import evaluate_base_to_new, evaluate_domain_generalization, evaluate_split

    data_args, run_args = command.data, command.run
    report = {"edge_rule": run_args.ece_edge_rule, "mce_variant": run_args.mce_variant}
    eval_kwargs = {"n_bins": run_args.ece_bins, "trainer": trainer, "report_kwargs": report}
    if data_args.task == "base_to_new":
        base_test, new_test = test_set(train_side.test), test_set(new_side.test)
        progress.labels = ["Evaluating base classes", "Evaluating new classes"]
        evaluation = evaluate_base_to_new(
            model, base_test, new_test, train_side.class_names, new_side.class_names, **eval_kwargs
        )
        results.update(evaluation.to_dict())
        results["class_names"] = {"base": train_side.class_names, "new": new_side.class_names}
        return evaluation, {"base": evaluation.base, "new": evaluation.new}
    if data_args.task == "few_shot":
        progress.labels = ["Evaluating test"]
        evaluation = evaluate_split(model, test_set(train_side.test), train_side.class_names, **eval_kwargs)
        results["test"] = evaluation.metrics
        results["class_names"] = train_side.class_names
        return evaluation, {"test": evaluation}
    targets = {}
    for target in data_args.dg_targets:
        test = load_coop_benchmark(target, data_args.data_root)["test"]
        targets[target] = (test_set(test), list(test.features["label"].names))
    progress.labels = ["Evaluating source", *(f"Evaluating {t}" for t in targets)]
    evaluation = evaluate_domain_generalization(
        model, (test_set(train_side.test), train_side.class_names), targets, **eval_kwargs
    )
    results.update(evaluation.to_dict())
    return evaluation, {"source": evaluation.source, **evaluation.targets}


def flat_metrics(evaluation) -> dict[str, float]:
    """``{"<split>_<metric>": value}`` of an evaluation, for ``trainer.save_metrics("eval", ...)``."""
    values = evaluation.to_dict() if hasattr(evaluation, "to_dict") else {"test": evaluation.metrics}
    flat: dict[str, float] = {}
    for split, metrics in values.items():
        if isinstance(metrics, dict):
            for key, value in metrics.items():
                if isinstance(value, (int, float)):
                    flat[f"{split}_{key}"] = value
                elif isinstance(value, dict):
                    flat.update({f"{split}_{key}_{k}": v for k, v in value.items() if isinstance(v, (int, float))})
    return flat
