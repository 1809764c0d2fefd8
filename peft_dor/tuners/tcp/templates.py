"""TCP's "ori" templates (its class-knowledge input and knowledge-guided target), where they differ from the
canonical ones (``peft_dor.data.templates.CANONICAL_TEMPLATES``); keys are the Dassl dataset names."""

TEMPLATES: dict[str, str] = {
    "FGVCAircraft": "a photo of an aircraft {}.",
    "DescribableTextures": "a photo of a {}, a type of texture.",
    "Food101": "a photo of a {}, a type of food.",
}
