"""The VPT trainer's frozen text side: one template for every dataset (a ``str`` rather than a per-dataset table)."""

TEMPLATES = "a photo of a {}."
