"""Crash-safe saving: files are written into a staging folder next to the target, then moved in with ``os.replace``.

PEFT's ``save_pretrained`` and ``Trainer._save`` write ``adapter_model.safetensors`` and ``adapter_config.json`` in
place: a crash (or a full disk) mid-write destroys the previous adapter and can leave new weights next to an old
config. Here the new files are complete on disk before the folder is touched, and the folder is updated so that a
weights file is present only once everything it goes with is in place:

1. every file is written and flushed (``fsync``) in a staging folder ``.<name>.staging-*`` beside the target;
2. the target's weights files that the save replaces (``*.safetensors``, ``*.bin``, ``*.pt``, ``*.pth``) are removed;
3. the other files (configs, model card) are moved in, each with an atomic ``os.replace``;
4. the weights files are moved in last.

A crash before step 2 leaves the old adapter untouched; a crash after it leaves no weights file, so loading fails
loudly instead of mixing old and new files; after step 4 the new adapter is complete. The staging folder is removed
on success and on error (only a hard kill leaves one behind; its name starts with a dot and never looks like a
checkpoint).

Example:
    ```python
    from peft_dor.training.saving import save_pretrained_atomically

    save_pretrained_atomically(model, "out/coop-dtd")  # model.save_pretrained, crash-safe
    ```
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: files whose presence means "these weights can be loaded": moved in last
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def _fsync(path: Path) -> None:
    flags = (os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)) if path.is_dir() else os.O_RDONLY
    try:
        descriptor = os.open(path, flags)
    except OSError:  # some platforms cannot open folders; durability is then the OS's business
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def commit_staged(staging: str | os.PathLike, target: str | os.PathLike) -> list[Path]:
    """Move every file of ``staging`` (recursively) into ``target``, weights files last, as described above.

    Returns:
        The paths written in ``target``.
    """
    staging, target = Path(staging), Path(target)
    files = sorted(path for path in staging.rglob("*") if path.is_file())
    for path in files:
        _fsync(path)
    weights = [path for path in files if path.suffix in WEIGHT_SUFFIXES]
    others = [path for path in files if path.suffix not in WEIGHT_SUFFIXES]
    target.mkdir(parents=True, exist_ok=True)
    for path in weights:  # from here until step 4 the folder holds no loadable weights
        destination = target / path.relative_to(staging)
        if destination.is_file() or destination.is_symlink():
            destination.unlink()
    written = []
    for path in others + weights:
        destination = target / path.relative_to(staging)
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, destination)
        written.append(destination)
    for folder in sorted({path.parent for path in written}):
        _fsync(folder)
    return written


@contextmanager
def staged_directory(directory: str | os.PathLike, carry: Sequence[str] = ("README.md",)) -> Iterator[Path]:
    """A staging folder whose files are committed into ``directory`` when the block ends without error.

    Args:
        directory: the folder to update (created if needed).
        carry: files of ``directory`` copied into the staging folder first, so writers that update an existing file
            (PEFT's model card) see it.

    Example:
        ```python
        with staged_directory("out") as staging:
            model.save_pretrained(staging)
        ```
    """
    target = Path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.staging-", dir=target.parent))
    except PermissionError:  # a read-only parent: stage inside the target itself (same file system either way)
        target.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target))
    try:
        for name in carry:
            if (target / name).is_file():
                shutil.copy2(target / name, staging / name)
        yield staging
        commit_staged(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def save_pretrained_atomically(model: Any, save_directory: str | os.PathLike, **kwargs: Any) -> None:
    """``model.save_pretrained(save_directory, **kwargs)`` through a staging folder (see the module docstring), so a
    crash never leaves a half-written ``adapter_model.safetensors`` or new weights next to an old config.

    Args:
        model: a ``PeftModel`` (anything with ``save_pretrained``).
        save_directory: the adapter folder.
        **kwargs: passed to ``save_pretrained`` (``selected_adapters``, ``is_main_process``, ...).

    Example:
        ```python
        save_pretrained_atomically(model, "out/coop-dtd")
        PeftModel.from_pretrained(CLIPModel.from_pretrained(base), "out/coop-dtd")
        ```
    """
    if os.path.isfile(save_directory):
        raise ValueError(f"`save_directory` must be a folder, not a file: {os.fspath(save_directory)!r}.")
    with staged_directory(save_directory) as staging:
        model.save_pretrained(str(staging), **kwargs)
