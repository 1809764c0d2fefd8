"""The command's fixtures (image folder, in-process runner) for the SigLIP command-line tests."""

from ..cli.conftest import image_folder, restore_library_output, run_cli  # noqa: F401  (re-exported fixtures)
