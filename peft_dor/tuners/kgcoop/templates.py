"""KgCoOp's per-dataset templates of its frozen target features, where they differ from the canonical ones
(``peft_dor.data.templates.CANONICAL_TEMPLATES``); keys are the Dassl dataset names."""

TEMPLATES: dict[str, str] = {"DescribableTextures": "a photo of a {}, a type of texture."}
