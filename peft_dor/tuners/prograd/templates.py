"""ProGrad's zero-shot teacher templates, where they differ from the canonical ones
(``peft_dor.data.templates.CANONICAL_TEMPLATES``); keys are the Dassl dataset names."""

TEMPLATES: dict[str, str] = {
    "OxfordPets": "a type of pet, a photo of a {}.",
    "OxfordFlowers": "a type of flower, a photo of a {}.",
    "FGVCAircraft": "a type of aircraft, a photo of a {}.",
    "DescribableTextures": "a texture of {}.",
    "Food101": "a type of food, a photo of {}.",
}
