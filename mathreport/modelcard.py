"""The model card of a transformer run's adapter (`model/README.md`, in place of peft's empty template), made from
the run's own files, with the Hub's metadata header (huggingface_hub's `ModelCardData`) so it can be pushed as is."""

from __future__ import annotations

import json
import re
from pathlib import Path

from mathreport import artifacts, labels, record
from mathreport.markup import md, md_code

PIPELINE_TAG = "text-classification"
# metrics.json key -> (model-index metric type, its config, the name shown); the CIs come from metrics.json's ci95.
CARD_METRICS = {
    "Accuracy": ("accuracy", None, "Accuracy"),
    "F1_macro": ("f1", "macro", "F1 (macro)"),
    "F1_weighted": ("f1", "weighted", "F1 (weighted)"),
    "Precision_macro": ("precision", "macro", "Precision (macro)"),
    "Recall_macro": ("recall", "macro", "Recall (macro)"),
    "AUC_macro": ("roc_auc", "macro", "ROC AUC (macro, one-vs-rest)"),
}
# An id on the Hub: owner/name, letters, digits, '-', '_' and '.' only.
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


has_adapter = artifacts.has_adapter  # whether the run saved a peft adapter: only then it has a card


def hub_id(name: str | None) -> str | None:
    """`name` when it reads as a Hub id (owner/name) and is not a local path, else None."""
    if not name or not HUB_ID.fullmatch(name) or Path(name).expanduser().exists():
        return None
    return name


def base_model(manifest: record.RunRecord) -> dict:
    """{"hub_id", "weights", "gguf"}: the base model's Hub id (None when it has none) and where it was read from.

    A GGUF file is a quantised conversion: its Hub id comes from the file's own metadata, never from the preset.
    """
    weights = str(manifest.weights or "")
    source_json = Path(weights) / "mathreport_source.json" if weights else None
    out: dict = {"hub_id": hub_id(manifest.hf_id), "weights": weights, "gguf": None}
    if source_json is not None and source_json.is_file():
        source = json.loads(source_json.read_text(encoding="utf-8"))
        metadata = _gguf_metadata(Path(source.get("source", "")))
        out["gguf"] = {**source, "metadata": metadata}
        out["hub_id"] = _hub_id_from_url(
            metadata.get("general.base_model.0.repo_url") or metadata.get("general.source.repo_url")
        )
    return out


def _gguf_metadata(path: Path) -> dict:
    # The `general.*` text fields of a GGUF file (empty when the file or the gguf package is missing).
    try:
        from gguf import GGUFReader
    except ImportError:
        return {}
    if not path.is_file():
        return {}
    fields = GGUFReader(str(path)).fields
    values = {key: field.contents() for key, field in fields.items() if key.startswith("general.")}
    return {key: value for key, value in values.items() if isinstance(value, str)}


def _hub_id_from_url(url: str | None) -> str | None:
    match = re.fullmatch(r"https?://huggingface\.co/([\w.-]+/[\w.-]+)/?", url or "")
    return match.group(1) if match else None


def _cell(value: object) -> str:
    # A data string as a markdown table cell: a code span, with the pipe escaped for GFM tables.
    return md_code(value).replace("|", "\\|")


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + " --- |" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
    ]


def _eval_results(metrics: dict, manifest: record.RunRecord):
    from huggingface_hub import EvalResult

    file_name = Path(manifest.split("test").path or "test_split.csv").name
    results = []
    for key, (metric_type, config, shown) in CARD_METRICS.items():
        value = metrics.get(key)
        if value is None:
            continue
        results.append(
            EvalResult(
                task_type=PIPELINE_TAG,
                task_name="Math question topic classification (8 classes)",
                dataset_type="csv",
                dataset_name=f"math questions, test split ({file_name})",
                dataset_split="test",
                dataset_args={"data_files": file_name},
                metric_type=metric_type,
                metric_value=float(value),
                metric_name=shown,
                metric_config=config,
            )
        )
    return results


def model_card(run_dir: Path):
    """The huggingface_hub `ModelCard` of a finished transformer run, from its run.json and metrics.json."""
    from huggingface_hub import ModelCard, ModelCardData

    run_dir = Path(run_dir)
    manifest = artifacts.read_manifest(run_dir)
    metrics = artifacts.read_metrics(run_dir)
    base = base_model(manifest)
    model_name = (
        "mathreport-" + re.sub(r"[^\w.-]+", "-", str(manifest.model)).strip("-") + "-math-topics"
    )
    four_bit = manifest.load_in_4bit
    tags = ["mathreport", "lora", "peft", "math", PIPELINE_TAG]
    tags += ["4-bit", "bitsandbytes", "qlora"] if four_bit else []
    data = ModelCardData(
        base_model=base["hub_id"],
        library_name="peft",
        pipeline_tag=PIPELINE_TAG,
        tags=tags,
        model_name=model_name,
        eval_results=_eval_results(metrics, manifest),
    )
    body = _body(manifest, metrics, base, model_name)
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")


def write_model_card(run_dir: Path) -> Path:
    """Write `model/README.md` of a finished transformer run (atomically), replacing peft's template."""
    return artifacts.RunWriter(run_dir).model_card(str(model_card(run_dir)))


def _body(manifest: record.RunRecord, metrics: dict, base: dict, model_name: str) -> str:
    lines = [
        f"# {model_name}",
        "",
    ]  # letters, digits, '.', '-' and '_' only (model_card made it so)
    described = (
        f"`{base['hub_id']}`" if base["hub_id"] else "a base model that has no Hub id (below)"
    )
    lines += [
        f"A LoRA adapter (peft) with a trained classification head on {described}: it reads a math question "
        f"and gives the probabilities of {labels.NUM_CLASSES} topics. Trained and evaluated by mathreport; "
        "every figure below is copied from the run's "
        f"`{artifacts.MANIFEST}` and `{artifacts.METRICS}`.",
        "",
    ]
    lines += _table(
        ("id", "topic", "Turkish name (the report's)"),
        [(str(t.id), t.en, t.tr) for t in labels.TOPICS],
    )
    lines += ["## Base model", ""] + _base_lines(manifest, base)
    lines += ["## LoRA", ""] + _lora_lines(manifest)
    lines += ["## Quantisation", ""] + _quantisation_lines(manifest)
    lines += ["## Training", ""] + _training_lines(manifest)
    lines += ["## Data", ""] + _data_lines(manifest)
    lines += ["## Test metrics", ""] + _metric_lines(metrics)
    lines += ["## How to load it", ""] + _usage_lines(manifest, base)
    lines += [
        "## Framework versions",
        "",
        *(f"- {md_code(k)} {md_code(v)}" for k, v in manifest.versions.items()),
        "",
    ]
    return "\n".join(lines)


def _base_lines(manifest: record.RunRecord, base: dict) -> list[str]:
    rows = [
        ("Hub id", _cell(base["hub_id"]) if base["hub_id"] else "none recorded"),
        ("preset", _cell(manifest.model)),
        ("weights read from", _cell(base["weights"])),
    ]
    gguf = base["gguf"]
    if gguf:
        name = gguf["metadata"].get("general.name")
        rows += [
            ("GGUF file", _cell(gguf.get("source"))),
            ("GGUF SHA-256", _cell(gguf.get("sha256"))),
            ("GGUF model name", _cell(name) if name else "not in the file"),
        ]
    lines = _table(("", ""), rows)
    if gguf:
        lines += [
            "The weights are a GGUF file's, dequantised to float32 by mathreport (`weights.ensure_gguf_folder`): "
            "a quantised conversion, not the original checkpoint. Load the adapter on the same file's "
            "weights.",
            "",
        ]
    elif not base["hub_id"]:
        lines += [
            "This base has no Hub id (a local folder or a test model), so the header names none; load the "
            "adapter on the same weights.",
            "",
        ]
    return lines


def _lora_lines(manifest: record.RunRecord) -> list[str]:
    lora = manifest.lora or {}
    return _table(
        (
            "r",
            "lora_alpha",
            "lora_dropout",
            "target modules",
            "trained in full and saved (head)",
            "task type",
        ),
        [
            (
                str(lora.get("r")),
                str(lora.get("lora_alpha")),
                str(lora.get("lora_dropout")),
                ", ".join(_cell(m) for m in sorted(lora.get("target_modules") or [])),
                ", ".join(_cell(m) for m in lora.get("modules_to_save") or []),
                _cell(lora.get("task_type")),
            )
        ],
    )


def _quantisation_lines(manifest: record.RunRecord) -> list[str]:
    quant = manifest.quantization
    if not manifest.load_in_4bit or not quant:
        return [f"None: the base was loaded with {_cell(manifest.dtype)} weights.", ""]
    return _table(
        (
            "method",
            "bits",
            "quant type",
            "double quantisation",
            "compute dtype",
            "kept out of it",
            "bitsandbytes",
        ),
        [
            (
                _cell(quant.get("method")),
                str(quant.get("bits")),
                _cell(quant.get("quant_type")),
                "yes" if quant.get("double_quant") else "no",
                _cell(quant.get("compute_dtype")),
                ", ".join(_cell(m) for m in quant.get("skip_modules") or []),
                _cell(quant.get("bitsandbytes")),
            )
        ],
    )


def _training_lines(manifest: record.RunRecord) -> list[str]:
    hyper = manifest.hyperparameters
    training = manifest.training or {}
    rows = [(_cell(k), _cell(v)) for k, v in hyper.items()]
    rows += [
        ("device", _cell(manifest.device)),
        ("training autocast", _cell(manifest.train_autocast)),
    ]
    if training.get("train_seconds") is not None:
        rows.append(("training seconds (Trainer)", f"{training['train_seconds']:.1f}"))
    for key in ("trainable_parameters", "total_parameters"):
        if training.get(key) is not None:
            rows.append((md(key.replace("_", " ")), f"{training[key]:,}"))
    lines = _table(("setting", "value"), rows)
    if manifest.command:
        lines += ["The command that trains it again:", "", "```bash", manifest.command, "```", ""]
    return lines


def _data_lines(manifest: record.RunRecord) -> list[str]:
    rows = [
        (md(split), _cell(Path(info.path).name), str(info.rows), _cell(info.sha256))
        for split, info in manifest.data.items()
    ]
    return _table(("split", "file", "rows", "SHA-256"), rows)


def _metric_lines(metrics: dict) -> list[str]:
    ci = metrics.get("ci95") or {}
    boot = metrics.get("bootstrap") or {}
    rows = []
    for key, (_, _, shown) in CARD_METRICS.items():
        if metrics.get(key) is None:
            continue
        low_high = ci.get(key)
        interval = f"{low_high[0]:.4f} – {low_high[1]:.4f}" if low_high else "not computed"
        rows.append((shown, f"{metrics[key]:.4f}", interval))
    lines = [
        f"On the {metrics.get('n_test')} questions of the test split (never used for training or for choosing "
        "the checkpoint).",
        "",
    ]
    lines += _table(("metric", "value", "95% CI"), rows)
    if boot:
        lines += [
            f"Confidence intervals: {md(boot.get('method'))} bootstrap over test questions, "
            f"{boot.get('n_resamples')} resamples (seed {boot.get('seed')}).",
            "",
        ]
    return lines


def _usage_lines(manifest: record.RunRecord, base: dict) -> list[str]:
    base_ref = base["hub_id"] or base["weights"]
    four_bit = manifest.load_in_4bit
    quant = manifest.quantization or {}
    code = [
        "import torch",
        "from peft import PeftModel",
        "from transformers import AutoModelForSequenceClassification, AutoTokenizer"
        + (", BitsAndBytesConfig" if four_bit else ""),
        "",
        'adapter = "."  # this folder, or its Hub repository id once pushed',
        "tokenizer = AutoTokenizer.from_pretrained(adapter)",
    ]
    if four_bit:
        code += [
            "quantization = BitsAndBytesConfig(",
            f"    load_in_4bit=True, bnb_4bit_quant_type={quant.get('quant_type')!r},",
            f"    bnb_4bit_use_double_quant={bool(quant.get('double_quant'))!r}, "
            f"bnb_4bit_compute_dtype=torch.{quant.get('compute_dtype')},",
            f"    llm_int8_skip_modules={list(quant.get('skip_modules') or [])!r})",
            "base = AutoModelForSequenceClassification.from_pretrained(",
            f"    {base_ref!r}, num_labels={labels.NUM_CLASSES}, quantization_config=quantization,",
            '    dtype=torch.bfloat16, device_map={"": "cuda:0" if torch.cuda.is_available() else "cpu"})',
        ]
    else:
        code += [
            "base = AutoModelForSequenceClassification.from_pretrained(",
            f"    {base_ref!r}, num_labels={labels.NUM_CLASSES})",
        ]
    code += [
        "base.config.pad_token_id = tokenizer.pad_token_id  # decoders pool the last non-padding token"
    ]
    if four_bit:
        code += [
            "# The dtypes of training (norms, embeddings and head in float32): the run's own predictions.",
            "from peft import prepare_model_for_kbit_training",
            "base = prepare_model_for_kbit_training(base, use_gradient_checkpointing=False)",
        ]
    code += [
        "model = PeftModel.from_pretrained(base, adapter).eval()",
        'batch = tokenizer(["Find all real roots of x^2 - 5x + 6."], return_tensors="pt").to(base.device)',
        "with torch.inference_mode():",
        "    probs = model(**batch).logits.float().softmax(-1)",
        f"labels = {labels.names('en')!r}",
        "print(labels[int(probs.argmax())])",
    ]
    # The code holds data (a path); a fence longer than any backtick run in it keeps the block closed.
    fence = "`" * max(3, 1 + max((len(r) for r in re.findall(r"`+", "\n".join(code))), default=0))
    return [
        "With peft (the head is saved with the adapter, in `modules_to_save`):",
        "",
        f"{fence}python",
        *code,
        fence,
        "",
        "With mathreport, from the run directory this folder belongs to:",
        "",
        "```bash",
        'mathreport predict --run_dir RUN_DIR "Find all real roots of x^2 - 5x + 6."',
        "```",
        "",
    ]
