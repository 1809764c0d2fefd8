"""The metrics package's shape: no import cycles, wrappers on the functional package's public names, small modules,
and block-wise top-label statistics equal to whole-matrix ones."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

import peft_dor.metrics.functional as functional
from peft_dor.metrics import top_label_stats
from peft_dor.metrics.functional import top_label as top_label_module

PACKAGE = "peft_dor.metrics"
ROOT = Path(functional.__file__).resolve().parent.parent  # peft_dor/metrics
WRAPPERS = ("accumulator", "trainer", "evaluate_metric", "temperature", "plots")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join((PACKAGE, *parts))


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _imports(name: str, path: Path) -> list[tuple[str, list[str]]]:
    """Every import in the file (module level, in functions and under TYPE_CHECKING), as (module, imported names)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.append((module, [alias.name for alias in node.names]))
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for module, names in _imports(name, path):
            # `from . import x` may name a submodule; otherwise the import is of the module itself
            targets = [f"{module}.{n}" for n in names if f"{module}.{n}" in modules] or [module]
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def test_no_import_cycles():
    graph = _graph()
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt) :], nxt]
                pytest.fail(f"import cycle: {' -> '.join(cycle)}")
            if nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_plots_import_metrics_never_the_reverse():
    graph = _graph()
    importers = sorted(name for name, deps in graph.items() if f"{PACKAGE}.plots" in deps)
    assert importers == [PACKAGE]  # only the package's __init__ re-exports it
    assert f"{PACKAGE}.functional" in graph[f"{PACKAGE}.plots"]


def test_functional_package_imports_nothing_but_itself_and_the_drawing_leaf():
    graph = _graph()
    allowed = {f"{PACKAGE}.drawing"}  # ReliabilityTable.plot, imported when called; drawing imports nothing of ours
    for name, deps in graph.items():
        if name.startswith(f"{PACKAGE}.functional"):
            outside = {d for d in deps if not d.startswith(f"{PACKAGE}.functional")}
            assert outside <= allowed, (name, outside)
    assert graph[f"{PACKAGE}.drawing"] == set()


@pytest.mark.parametrize("wrapper", WRAPPERS)
def test_wrappers_import_only_public_functional_names(wrapper):
    modules = _modules()
    name = f"{PACKAGE}.{wrapper}"
    for module, names in _imports(name, modules[name]):
        if module.startswith(f"{PACKAGE}.functional"):
            assert module == f"{PACKAGE}.functional", f"{wrapper} imports the submodule {module}"
            assert set(names) <= set(functional.__all__), set(names) - set(functional.__all__)


def test_modules_are_small():
    sizes = {name: len(path.read_text().splitlines()) for name, path in _modules().items()}
    assert max(sizes.values()) <= 450, sizes


@pytest.mark.parametrize("probabilities", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_blocks_give_the_whole_matrix_results(monkeypatch, random_logits, probabilities, dtype):
    """Statistics computed in blocks (the last one short) equal those of one block, bit for bit, and equal a plain
    whole-matrix float64 softmax to 1e-12."""
    logits, labels = random_logits(n=1003, c=7, seed=5)
    preds = (logits.softmax(1) if probabilities else 4 * logits).to(dtype)
    whole = top_label_stats(preds, labels)
    monkeypatch.setattr(top_label_module, "_BLOCK_ELEMENTS", 7 * 64)  # 64 rows per block: 16 blocks, last one short
    blocked = top_label_stats(preds, labels)
    for a, b in zip(whole, blocked, strict=True):
        np.testing.assert_array_equal(a, b)
    x = preds.to(torch.float64)
    probs = x if probabilities else x.softmax(1)
    conf, pred = probs.max(1)
    np.testing.assert_allclose(blocked.confidence, conf.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(blocked.correct, (pred == labels).double().numpy())
    log_probs = torch.log(x.clamp_min(np.finfo(np.float64).eps)) if probabilities else x.log_softmax(1)
    nll = -log_probs.gather(1, labels[:, None]).squeeze(1)
    np.testing.assert_allclose(blocked.nll, nll.numpy(), rtol=0, atol=1e-12)
    one_hot = torch.nn.functional.one_hot(labels, 7).double()
    np.testing.assert_allclose(blocked.brier, ((probs - one_hot) ** 2).sum(1).numpy(), rtol=0, atol=1e-12)
