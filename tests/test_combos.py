"""Finding the combination for three picked parts: what each family needs decides what each encoder is offered."""

from __future__ import annotations

import pytest

from vlm_demo.adapters import ADAPTERS, adapter_needs
from vlm_demo.combos import ComboError, adapter_families, resolve_combo
from vlm_demo.encoders import ENCODERS, NEEDS
from vlm_demo.llms import GenerationSettings


def test_families_declare_what_they_need_from_the_encoder():
    assert adapter_needs("multistage") == {"stage_maps"}
    assert adapter_needs("mlp") == set()
    assert adapter_needs("mlp", {"stage_features": [0, 1]}) == {"stage_maps"}
    assert all(adapter_needs(kind) <= set(NEEDS) for kind in ADAPTERS)


def test_an_encoder_is_offered_only_the_families_it_can_serve():
    for name, spec in ENCODERS.items():
        assert ("multistage" in adapter_families(name)) == ("stage_maps" in spec.gives), name
    assert "stage_maps" in ENCODERS["efficientnet-lite0"].gives and "stage_maps" in ENCODERS["resnet-50"].gives


def test_an_ad_hoc_combination_gets_options_its_encoder_can_serve():
    on_cnn = resolve_combo("efficientnet-lite0", "mlp", "qwen2.5-0.5b-instruct")
    on_vit = resolve_combo("clip-vit-b16", "mlp", "smollm2-135m-instruct")
    assert on_cnn.adapter_options.get("stage_features") and not on_cnn.trained
    assert not adapter_needs("mlp", on_vit.adapter_options)


@pytest.mark.parametrize(("parts", "words"), [
    (("dinov2-small", "multistage", "smollm2-135m-instruct"), "needs CNN stage maps"),
    (("no-such-encoder", "mlp", "smollm2-135m-instruct"), "Unknown encoder"),
    (("efficientnet-lite0", "mlp", "not a model"), "Unknown LLM"),
])
def test_impossible_choices_say_what_is_wrong(parts, words):
    with pytest.raises(ComboError, match=words):
        resolve_combo(*parts)


def test_generation_settings_refuse_out_of_range_values():
    assert GenerationSettings().check() == GenerationSettings()
    for bad, words in [({"max_new_tokens": 0}, "max new tokens"), ({"temperature": 2.5}, "temperature"),
                       ({"top_p": 0.0}, "top-p"), ({"seed": -1}, "seed")]:
        with pytest.raises(ValueError, match=words):
            GenerationSettings(**bad).check()
    with pytest.raises(ValueError, match="between 1 and 256"):
        GenerationSettings(max_new_tokens=300).check(most_new_tokens=256)
