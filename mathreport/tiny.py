"""Tiny Qwen2 / Mistral models with random weights and a locally trained tokenizer, for tests and dry runs: the 7B
decoders' architecture at a size that trains on a CPU, so the decoder code path is tested without downloads."""

from __future__ import annotations

from pathlib import Path

from mathreport.files import build_atomically, cache_dir

ARCHS = ("qwen2", "mistral")
TINY_SHAPE = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 128,
    "max_position_embeddings": 512,
}
VOCAB_SIZE = 512
# The special tokens of the real tokenizers: Qwen2.5 has one, <|endoftext|>, as EOS and pad (transformers' Qwen2
# tokenizer sets it by default); Mistral has BOS <s> and EOS </s> and no pad, so loading it sets pad = EOS.
SPECIAL_TOKENS = {
    "qwen2": {"eos_token": "<|endoftext|>"},
    "mistral": {"bos_token": "<s>", "eos_token": "</s>"},
}

# A few lines of the corpus's vocabulary so the BPE learns some merges; byte-level BPE encodes any text anyway.
_TOKENIZER_TEXTS = (
    "Solve for x: 3x + 5 = 20. Find all real roots of the polynomial x^2 - 5x + 6.",
    "In triangle ABC, AB = 5 and AC = 12. Find the area of the circle inscribed in the square.",
    "Find the derivative of sin(2x) and evaluate the integral of x^3 from 0 to 1. Compute the limit.",
    "How many ways can 5 books be arranged on a shelf? What is the probability that two dice sum to 7?",
    "Find the remainder when 7^100 is divided by 13. Is 221 a prime number? Compute gcd(84, 36).",
    "Find the eigenvalues of the matrix [[2, 1], [1, 2]]. Compute the determinant and the rank of A.",
    "Let G be a group of order 12. Show that the ring Z_6 has zero divisors; find the order of the element.",
    "A train travels 120 km in 2 hours. What is its average speed? Ali buys 3 apples for 12 lira.",
    "Cebir Geometri Kalkülüs İstatistik ve Olasılık Sayı Teorisi Kombinatorik Lineer Cebir Soyut Cebir",
    "Algebra Geometry and Trigonometry Calculus and Analysis Probability and Statistics Number Theory",
    "Combinatorics and Discrete Math Linear Algebra Abstract Algebra and Topology $\\frac{a}{b}$ \\sqrt{2}",
)


def build_tokenizer(arch: str):
    """A byte-level BPE tokenizer with the special tokens of the real `arch` tokenizer and no pad token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    _check_arch(arch)
    special = SPECIAL_TOKENS[arch]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=list(special.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_TOKENIZER_TEXTS * 4, trainer)
    if arch == "mistral":
        # Mistral's tokenizer prepends BOS and Qwen2's adds nothing; keep that difference in the tiny ones.
        bos = special["bos_token"]
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A",
            pair=f"{bos} $A {bos} $B",
            special_tokens=[(bos, tok.token_to_id(bos))],
        )
    return PreTrainedTokenizerFast(tokenizer_object=tok, **special)


def tiny_config(arch: str, **overrides):
    """The config of a tiny causal LM of `arch`; overrides change any field (vocab, special tokens, the shape)."""
    from transformers import MistralConfig, Qwen2Config

    _check_arch(arch)
    cls = Qwen2Config if arch == "qwen2" else MistralConfig
    # No pad_token_id: like the real checkpoints, so models.load_base_model has to set it.
    fields = {**TINY_SHAPE, "vocab_size": VOCAB_SIZE, "tie_word_embeddings": False, **overrides}
    return cls(**fields)


def build_tiny_model(arch: str, out_dir: str | Path, seed: int = 0) -> Path:
    """Save a tiny `arch` ("qwen2" or "mistral") causal LM, random weights by `seed`, and tokenizer to `out_dir`."""
    # A causal LM like the Hub checkpoints: a classifier loaded on it gets a fresh `score` head, as on the 7B ones.
    import torch
    from transformers import AutoModelForCausalLM

    out_dir = Path(out_dir)
    tokenizer = build_tokenizer(arch)
    config = tiny_config(
        arch,
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def ensure_tiny_model(arch: str) -> Path:
    """The folder of the `tiny-<arch>` preset, built on first use (atomically, so parallel runs don't clash)."""
    _check_arch(arch)
    target = cache_dir() / f"tiny-{arch}"
    if (target / "config.json").is_file():
        return target
    # A copy another process renamed into place first is identical (same seed).
    return build_atomically(target, lambda tmp: build_tiny_model(arch, tmp / "model"))


def _check_arch(arch: str) -> None:
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")
