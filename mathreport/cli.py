"""The `mathreport` command: thin; each subcommand parses flags and calls the package."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mathreport import artifacts, export, files, i18n, options
from mathreport.errors import CommandError, MathreportError


def _positive_int(text: str) -> int:
    """An argparse type: an integer >= 1 (batch sizes, counts)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be an integer >= 1")
    return value


def cmd_train(args: argparse.Namespace) -> None:
    from mathreport import environment
    from mathreport.train import TrainConfig, train

    run_dir = train(options.from_args(TrainConfig, args))
    if environment.process_rank() != 0:  # under torchrun, rank 0 wrote the run and reports it
        return
    metrics = artifacts.read_metrics(run_dir)
    print(
        f"{run_dir}: Accuracy {metrics['Accuracy']:.3f}, F1_macro {metrics['F1_macro']:.3f} "
        f"on {metrics.get('n_test', '?')} test questions"
    )


def cmd_evaluate(args: argparse.Namespace) -> None:
    from mathreport.train import backfill_val_predictions, evaluate_run

    if args.write_val_preds:
        path = backfill_val_predictions(args.run_dir, val_path=args.val_path, device=args.device)
        print(f"wrote {path}")
    result = evaluate_run(args.run_dir)
    print(
        f"{args.run_dir}: wrote {artifacts.METRICS} and {artifacts.CLASS_REPORT} "
        f"(Accuracy {result['Accuracy']:.3f})"
    )


def cmd_prepare(args: argparse.Namespace) -> None:
    from mathreport import data, prepare

    if args.kaggle:
        source = prepare.download_kaggle(args.competition, args.out_dir / "kaggle")
        origin = {"source": "kaggle", "source_info": {"competition": args.competition}}
    elif args.input is None:
        raise CommandError(
            "prepare needs --input RAW.csv (or --kaggle to download the competition files)"
        )
    else:
        source = args.input
        origin = {"source": "file"}
    report = prepare.prepare(
        source,
        args.out_dir,
        text_col=args.text_col,
        label_col=args.label_col,
        val_size=args.val_size,
        test_size=args.test_size,
        seed=args.seed,
        augment=args.augment,
        force=args.force,
        **origin,
    )
    print(data.class_counts_table(report))
    for warning in report["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    if report.get("replaced"):
        print(f"kept the previous files in {report['replaced']}/", file=sys.stderr)
    print(
        f"wrote {args.out_dir}/augmented_train.csv, val_split.csv, test_split.csv, prepare_report.json"
    )


def cmd_demo_data(args: argparse.Namespace) -> None:
    from mathreport import data, demo, prepare

    existing = prepare.existing_split_files(args.out_dir)
    if existing and not args.force:
        raise CommandError(
            f"{args.out_dir} already holds {', '.join(existing)}; refusing to replace them with the "
            "demo corpus. Pass --force (the old ones are moved to a backup folder), or choose another "
            "--out_dir"
        )
    if existing:
        backup = prepare.back_up(args.out_dir, existing, move=True)
        print(f"moved the previous files to {backup}/", file=sys.stderr)
    report = demo.write_demo_corpus(args.out_dir, seed=args.seed)
    print(data.class_counts_table(report))
    print(f"wrote the offline demo corpus to {args.out_dir}")


def cmd_compare(args: argparse.Namespace) -> None:
    from mathreport import pipeline, summary

    names = args.runs or artifacts.find_runs(args.results_dir)
    if len(names) < 2:
        raise CommandError(
            f"compare needs at least 2 complete runs in {args.results_dir}/; found {names}"
        )
    for name in names:
        artifacts.check_consistency(Path(args.results_dir) / name)
    out = pipeline.write_comparisons(args.results_dir, names)
    runs = summary.load_runs(args.results_dir, names[0], names[1:])
    print(summary.comparisons_table(runs, "en").to_string(index=False))
    print(f"wrote {out}")


def cmd_report(args: argparse.Namespace) -> None:
    from mathreport import export

    paths = export.run_report(
        model=args.model,
        compare=args.compare,
        results_dir=args.results_dir,
        output_dir=args.output_dir,
        figures_dir=args.figures_dir,
        lang=args.lang,
        pdf=args.pdf,
    )
    for path in paths.values():
        print(f"wrote {path}")


def cmd_pipeline(args: argparse.Namespace) -> None:
    from mathreport import pipeline

    paths = pipeline.run_pipeline(
        models=args.models,
        data_dir=args.data_dir,
        results_dir=args.results_dir,
        kernel=args.kernel,
        force=args.force,
        num_epochs=args.num_epochs,
        report_model=args.report_model,
        pdf=args.pdf,
        lang=args.lang,
        model_path=args.model_path,
        batch_size=args.batch_size,
        device=args.device,
        load_in_4bit=args.load_in_4bit,
        training_args=args.training_args,
    )
    for path in paths.values():
        print(f"wrote {path}")


def cmd_ensemble(args: argparse.Namespace) -> None:
    from mathreport import ensemble

    runs = [ensemble.resolve_run(name, args.results_dir) for name in args.runs]
    run_dir = ensemble.build_ensemble(runs, args.output_dir, force=args.force, method=args.method)
    print(ensemble.summary_line(run_dir))


def cmd_search(args: argparse.Namespace) -> None:
    from mathreport import search

    cfg = options.from_args(search.SearchConfig, args)
    table = search.search(cfg)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    best = table.loc[table["best"]].iloc[0]
    print(
        f"best learning rate {best['learning_rate']:g} (validation macro F1 {best['val_macro_f1']:.3f}); "
        f"table: {cfg.output_dir / artifacts.LR_SEARCH}"
    )


# --dtype's spellings and the dtype each means (None: the flag was not given).
_DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "int8": "int8",
    "topk": "topk",
}


def cmd_bench(args: argparse.Namespace) -> None:
    from mathreport import bench, ensemble

    if ensemble.is_ensemble(args.run_dir):
        raise CommandError(
            f"{args.run_dir} is an ensemble: its {artifacts.LATENCY} is the sum of "
            "its members'; bench each member, then rebuild it with "
            "`mathreport ensemble --force`"
        )
    artifacts.require_run_dir(args.run_dir)
    backends = bench.backends_to_bench(
        artifacts.read_manifest(args.run_dir), args.backend, _DTYPES.get(args.dtype)
    )
    latency = bench.bench_run(
        args.run_dir,
        backends,
        output=args.output,
        threads=args.threads,
        batch_sizes=tuple(args.batch_sizes) if args.batch_sizes else None,
        max_items=args.max_items,
        repeats=args.repeats,
        device=args.device,
    )
    print(f"{latency['device']}, {latency['inputs']}, {latency['repeats']} interleaved repeat(s):")
    measured = latency.get("backends") or {
        f"{latency.get('backend', '')}-{latency['dtype']}": latency
    }
    for name, entry in measured.items():
        accuracy = f", test accuracy {entry['accuracy']:.4f}" if "accuracy" in entry else ""
        default = " (default)" if name == latency.get("default_backend") else ""
        print(f"  {name}{default}{accuracy}")
        for r in entry["results"]:
            print(
                f"    batch {r['batch_size']:>3}: p50 {r['p50_ms']:.2f} ms, p95 {r['p95_ms']:.2f} ms, "
                f"p99 {r['p99_ms']:.2f} ms per item, {r['items_per_s']:.1f} items/s, {r['threads']} thread(s)"
            )
    for name, reason in (latency.get("skipped") or {}).items():
        print(f"  {name}: not measured ({reason})")
    for purpose, c in (latency.get("choice") or {}).items():
        print(
            f"  the run's {purpose} choice (batch {c['batch_size']}): {c['chosen']}{_interval(c['chosen_timing'])}"
            + (
                f"; bench's fastest that passes: {c['fastest']}{_interval(c['fastest_timing'])}"
                if c.get("fastest")
                else ""
            )
            + (
                "; agree (within bench's spread)"
                if c["agrees"]
                else "; DISAGREE"
                if c["agrees"] is False
                else f"; not compared ({c['not_compared']})"
            )
        )
    print(f"wrote {args.output or Path(args.run_dir) / artifacts.LATENCY}")


def _interval(timing: dict | None) -> str:
    """A backend's p50 per item and the range of its repeats' p50s, as " p50 X ms [low-high]"; "" if untimed."""
    if not timing:
        return ""
    low, high = timing["interval_ms"]
    return f" p50 {timing['p50_ms']:.2f} ms [{low:.2f}-{high:.2f}]"


def cmd_export_onnx(args: argparse.Namespace) -> None:
    from mathreport import onnx_backend

    section = onnx_backend.export_run(args.run_dir)
    print(
        f"on {section['reference']['n']} questions of the {section['reference']['split']}, against "
        f"{section['reference']['backend']}:"
    )
    for c in section["candidates"]:
        test, ci = c.get("mcnemar"), c.get("accuracy_difference_ci95")
        paired = (
            f", only the reference right {test['b']}, only this one {test['c']}, p(worse) "
            f"{test['p_value']:.3g}, difference {c['accuracy_difference']:+.4f} [{ci[0]:+.4f}, {ci[1]:+.4f}]"
            if test and ci
            else ""
        )
        verdict = "" if c["passes"] else f"; refused: {c['not_timed']}"
        print(
            f"  {c['backend']}: accuracy {c['accuracy']:.4f}, argmax agreement {c['argmax_agreement']:.4f}"
            f"{paired}{verdict}"
        )
    for name, reason in section["skipped"].items():
        print(f"  {name}: skipped ({reason})")
    for purpose, choice in section["choices"].items():
        if choice["backends"]:
            print(
                f"{purpose} (batch {choice['batch_size']}), median ms per question [fastest-slowest round]:"
            )
        for name, t in choice["backends"].items():
            low, high = t["interval_ms"]
            print(
                f"  {name}: {t['median_ms']:.2f} [{low:.2f}-{high:.2f}]"
                + (" <- chosen" if name == choice["backend"] else "")
            )
        print(f"  {purpose} backend: {choice['backend']} ({choice['reason']})")
    print(f"recorded in {Path(args.run_dir) / artifacts.MANIFEST}")


def _read_questions(args: argparse.Namespace) -> list[str]:
    from mathreport import data, predict

    if args.input is not None and args.texts:
        raise CommandError("give questions either as arguments or with --input FILE.csv, not both")
    if args.input is None and not args.texts:
        raise CommandError(
            'give a question (mathreport predict --run_dir DIR "text"), --input FILE.csv, or '
            "questions on standard input, one per line (... --run_dir DIR - < questions.txt)"
        )
    texts = (
        list(args.texts) if args.input is None else data.read_questions(args.input, args.text_col)
    )
    predict.check_questions(texts)
    return texts


def _check_output(path: Path | None) -> None:
    """Refuse, before any inference, an --output that cannot be written or that is a run's own file."""
    if path is None:
        return
    if path.is_dir():
        raise CommandError(
            f"--output {path}: is a directory; give a CSV file name, e.g. {path / 'predictions.csv'}"
        )
    parent = path.resolve().parent
    if parent.exists() and not parent.is_dir():
        raise CommandError(f"--output {path}: {path.parent} is a file, not a directory")
    run_file = path.name in artifacts.RUN_FILES
    if run_file and any(
        (parent / name).is_file() for name in (artifacts.MANIFEST, artifacts.METRICS)
    ):
        raise CommandError(
            f"--output {path}: is a file of the run in {parent}, which predict must not replace; "
            "write to a file of its own, e.g. --output predictions.csv"
        )


def _reads_stdin(args: argparse.Namespace) -> bool:
    """Whether the questions come on standard input: `-` as the question, or none given while standard input is
    not a terminal (a pipe or a file), as Unix tools read it."""
    if args.input is not None:
        return False
    return args.texts == ["-"] or (
        not args.texts and sys.stdin is not None and not sys.stdin.isatty()
    )


def _answer_json(text: str, row, names: list[str], **more) -> str:
    import json

    best = int(row.argmax())
    return json.dumps(
        {
            **more,
            "text": text,
            "class_id": best,
            "topic": names[best],
            "probabilities": {names[i]: float(p) for i, p in enumerate(row)},
        },
        ensure_ascii=False,
    )


def _answer_line(text: str, row, names: list[str]) -> str:
    best = int(row.argmax())
    return f"{names[best]}\t{row[best]:.4f}\t{text[:80]}"


def _answers_frame(texts: list[str], probs, names: list[str]):
    """--output's rows: y_pred, topic, the probabilities and the text of each question."""
    out = artifacts.predictions_frame([0] * len(texts), probs, texts).drop(columns="y_true")
    out.insert(1, "topic", [names[i] for i in out["y_pred"]])
    return out


def cmd_predict(args: argparse.Namespace) -> None:
    import numpy as np

    from mathreport import ensemble, labels, predict

    stream = _reads_stdin(args)
    texts = None if stream else _read_questions(args)
    _check_output(args.output)
    artifacts.check_consistency(
        args.run_dir
    )  # a whole, current run only (an ensemble: of current members)
    dtype = _DTYPES.get(args.dtype)
    if ensemble.is_ensemble(args.run_dir):
        classifier = ensemble.load_classifier(args.run_dir, device=args.device, dtype=dtype)
    else:
        # Questions in a file or a stream are answered in batches: the run's throughput choice serves them.
        purpose = "throughput" if stream or args.input is not None else "latency"
        classifier = predict.load_classifier(
            args.run_dir, device=args.device, dtype=dtype, backend=args.backend, purpose=purpose
        )
    names = labels.names(args.lang)
    if stream:
        _predict_stdin(args, classifier, names)
        return
    probs = classifier.predict_proba(texts, batch_size=args.batch_size)
    if args.output is not None:
        files.write_csv(args.output, _answers_frame(texts, probs, names))
    for text, row in zip(texts, probs, strict=True):
        best = int(row.argmax())
        if args.json:
            print(_answer_json(text, row, names))
        elif len(texts) == 1:
            print(f"{names[best]} ({row[best]:.4f})")
            for i in np.argsort(-row, kind="stable"):
                print(f"  {names[i]:<16} {row[i]:.4f}")
        else:
            print(_answer_line(text, row, names))
    if args.output is not None:
        print(f"wrote {args.output}", file=sys.stderr)


def _predict_stdin(args: argparse.Namespace, classifier, names: list[str]) -> None:
    """Questions on standard input, one per line, answered --batch_size lines at a time (one at a time from a
    terminal): one answer line (or JSON object, with its input line number) per question, each batch printed as
    soon as it is answered, so memory stays bounded on any number of lines. A blank or non-UTF-8 line gets no
    answer; one warning at the end names them. --output is written as the answers come, and replaced only whole."""
    import contextlib
    import io
    import os

    from mathreport import predict

    skipped: dict[str, list[int]] = {}  # reason -> the first line numbers; counts in `counts`
    counts: dict[str, int] = {}

    def skip(line: int, reason: str) -> None:
        reason = reason.split(" (")[0]  # "not UTF-8 text (byte 0xff)": grouped by kind
        counts[reason] = counts.get(reason, 0) + 1
        if len(skipped.setdefault(reason, [])) < 10:
            skipped[reason].append(line)

    def which_lines() -> str:
        return "; ".join(
            f"{reason}: line{'s' if counts[reason] > 1 else ''} {', '.join(map(str, lines))}"
            + (f" and {counts[reason] - len(lines)} more" if counts[reason] > len(lines) else "")
            for reason, lines in skipped.items()
        )

    raw = getattr(sys.stdin, "buffer", None)
    lines = (
        io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="\n")
        if raw is not None
        else sys.stdin
    )
    batch_size = 1 if sys.stdin.isatty() else args.batch_size
    answered = 0
    try:
        with contextlib.ExitStack() as stack:
            table = None
            if args.output is not None:
                tmp = stack.enter_context(files.atomic_path(args.output))
                table = stack.enter_context(open(tmp, "w", encoding="utf-8", newline=""))
            for part in predict.stream_answers(classifier, lines, batch_size, on_skip=skip):
                if table is not None:
                    _answers_frame(part.texts, part.probs, names).to_csv(
                        table, index=False, header=not answered
                    )
                for line, text, row in zip(part.lines, part.texts, part.probs, strict=True):
                    print(
                        _answer_json(text, row, names, line=line)
                        if args.json
                        else _answer_line(text, row, names)
                    )
                sys.stdout.flush()
                answered += len(part.texts)
            if not answered:
                found = f" ({which_lines()})" if counts else ""
                raise CommandError(
                    f"standard input held no question{found}; give one question per line, or a "
                    'question as an argument (mathreport predict --run_dir DIR "text")'
                )
    except BrokenPipeError:
        # The reader stopped (`| head`): no more output is wanted. Quiet the interpreter's own flush at exit; a
        # --output file is not replaced with a part of the answers.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(
            141
        ) from None  # 128 + SIGPIPE, what a shell reports for a writer whose reader left
    finally:
        if raw is not None:
            lines.detach()  # leave sys.stdin's own buffer open
    if counts:
        print(
            f"warning: standard input: {sum(counts.values())} line(s) got no answer ({which_lines()})",
            file=sys.stderr,
        )
    if args.output is not None:
        print(f"wrote {args.output}", file=sys.stderr)


def cmd_plan(args: argparse.Namespace) -> None:
    import json

    from mathreport import memplan

    plan = memplan.plan_preset(
        args.model,
        model_path=args.model_path,
        batch_size=args.batch_size,
        max_length=args.max_length,
        load_in_4bit=args.load_in_4bit,
        gradient_checkpointing=args.gradient_checkpointing,
        lora_mlp=args.lora_mlp,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        eval_batch_size=args.eval_batch_size,
        optimizer=args.optimizer,
        compute_dtype=args.compute_dtype,
    )
    if args.json:
        print(
            json.dumps(
                {**plan.to_dict(), "gpus": memplan.gpu_table(plan, args.gpu_memory)}, indent=2
            )
        )
    else:
        print(memplan.format_plan(plan, args.gpu_memory))
    if (
        args.gpu_memory
    ):  # what train would say on a GPU of this size: a refusal naming the settings that fit
        memplan.check_fits(
            plan,
            int(args.gpu_memory * memplan.GIB) - plan.cuda_context,
            device=f"--gpu_memory {args.gpu_memory:g}",
            flags=memplan.PLAN_FLAGS,
        )


def _flag(parser: argparse.ArgumentParser, flag: str, *aliases: str, **keywords) -> None:
    """Add `flag`, the one spelling --help shows (underscores, as train's generated flags), and
    `aliases`: older spellings that parse the same and are not shown."""
    action = parser.add_argument(flag, **keywords)
    # An alias sets nothing when absent (the flag's default stands) and is left out of --help.
    hidden = {
        **keywords,
        "dest": action.dest,
        "default": argparse.SUPPRESS,
        "help": argparse.SUPPRESS,
    }
    for alias in aliases:
        parser.add_argument(alias, **{**hidden, "required": False})


# Flags that several subcommands share, each defined once: name -> (option strings, add_argument
# keywords); the first option string is the one --help shows, the others hidden aliases (`_flag`).
_SHARED = {
    "run_dir": (("--run_dir",), {"type": Path, "required": True}),
    "results_dir": (("--results_dir", "--results-dir"), {"type": Path, "default": Path("results")}),
    "out_dir": (("--out_dir", "--out-dir"), {"type": Path, "default": Path("data")}),
    "seed": (("--seed",), {"type": int, "default": 42}),
    "lang": (
        ("--lang",),
        {
            "choices": i18n.languages(),
            "default": "tr",
            "help": "the report's language (mathreport/i18n.py)",
        },
    ),
    "pdf": (("--pdf",), {"action": argparse.BooleanOptionalAction, "default": True}),
}


def _command(sub, name: str, func, help_text: str, *shared: str) -> argparse.ArgumentParser:
    """A subcommand's parser that runs `func`, starting with the `_SHARED` flags named in `shared`."""
    parser = sub.add_parser(name, help=help_text, description=help_text)
    parser.set_defaults(func=func)
    for flags, keywords in (_SHARED[n] for n in shared):
        _flag(parser, *flags, **keywords)
    return parser


def _add_engine_commands(sub) -> None:
    """The `search`, `bench`, `export-onnx` and `predict` subcommands."""
    from mathreport import search

    p = _command(
        sub,
        "search",
        cmd_search,
        f"learning-rate search on the validation split; writes DIR/{artifacts.LR_SEARCH}",
    )
    options.add_flags(p, search.SearchConfig, search.FLAGS, search.HELP)

    p = _command(
        sub,
        "bench",
        cmd_bench,
        f"compare a run's inference backends, interleaved; writes {artifacts.LATENCY}",
        "run_dir",
    )
    p.add_argument(
        "--backend",
        choices=["all", "auto", "torch", "onnx"],
        default="all",
        help="all (default): torch float32/bf16 and ONNX float32/int8 side by side; auto: the run's "
        "latency choice",
    )
    p.add_argument(
        "--dtype",
        choices=sorted(_DTYPES),
        default=None,
        help="only the backends with these weights",
    )
    p.add_argument(
        "--threads",
        type=_positive_int,
        default=None,
        help="torch and ONNX Runtime threads (default: all cores)",
    )
    p.add_argument(
        "--batch_sizes",
        type=_positive_int,
        nargs="+",
        default=None,
        help="default: 1, 32 and the batch size of the run's throughput choice",
    )
    p.add_argument(
        "--max_items", type=_positive_int, default=200, help="the first N test questions"
    )
    p.add_argument(
        "--repeats", type=_positive_int, default=3, help="passes over the questions, after warm-up"
    )
    p.add_argument(
        "--device", default=None, help="torch: cpu or cuda (default: cuda when available)"
    )
    p.add_argument(
        "--output",
        type=Path,
        default=None,
        help=f"write the JSON here (default: RUN_DIR/{artifacts.LATENCY})",
    )

    _command(
        sub,
        "export-onnx",
        cmd_export_onnx,
        "export a transformer run to ONNX (float32, int8), compare every backend with the "
        f"reference on the validation split ({artifacts.PREDS_VAL}; a run made before it "
        f"existed: {artifacts.PREDICTIONS}), time them and record the backend chosen per "
        f"batch size in {artifacts.MANIFEST}",
        "run_dir",
    )

    p = _command(
        sub,
        "predict",
        cmd_predict,
        "the topic of questions, with class probabilities, from a run's model",
        "run_dir",
    )
    p.add_argument(
        "texts",
        nargs="*",
        help="question text(s); none (or -): one question per line on standard input",
    )
    p.add_argument("--input", type=Path, default=None, help="CSV of questions (column --text_col)")
    p.add_argument("--text_col", default="Question")
    p.add_argument(
        "--output", type=Path, default=None, help="write topic and probabilities to this CSV"
    )
    p.add_argument(
        "--lang", choices=["tr", "en"], default="tr", help="class names in Turkish or English"
    )
    p.add_argument("--json", action="store_true", help="one JSON object per question")
    p.add_argument("--batch_size", type=_positive_int, default=32)
    p.add_argument(
        "--backend",
        choices=["auto", "torch", "onnx"],
        default="auto",
        help="auto: the run's choice, made when it was exported: for questions given as arguments its "
        "latency choice, for --input and standard input its throughput choice "
        "(docs/PERFORMANCE.md)",
    )
    p.add_argument(
        "--dtype",
        choices=sorted(_DTYPES),
        default=None,
        help="torch: float32, bf16, and topk for a --top_k_layers run (as it was trained); onnx: "
        "float32, int8 (default: the backend's float32, or auto's)",
    )
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")


# The packages whose versions `mathreport --version` prints: what a bug report needs to know.
VERSION_PACKAGES = ("mathreport", "torch", "transformers", "peft", "bitsandbytes", "onnxruntime")


class _PrintVersions(argparse.Action):
    """`--version`: mathreport's version and those of the libraries it runs on, one per line; then exit."""

    def __call__(self, parser, namespace, values, option_string=None):
        from mathreport import environment

        found = environment.versions(VERSION_PACKAGES, python=True, missing="not installed")
        found = {
            "mathreport": found.pop("mathreport"),
            **found,
        }  # the program first, as --version does elsewhere
        print("\n".join(f"{name} {version}" for name, version in found.items()))
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `mathreport` command."""
    parser = argparse.ArgumentParser(prog="mathreport", description=__doc__)
    parser.add_argument(
        "--version",
        nargs=0,
        action=_PrintVersions,
        help="print the versions of mathreport, python, " + ", ".join(VERSION_PACKAGES[1:]),
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = _command(
        sub, "train", cmd_train, "fine-tune and evaluate one model; writes results/<model>/"
    )
    options.add_flags(
        p, options.TrainConfig
    )  # every training option, defined once in mathreport/options.py

    p = _command(
        sub,
        "evaluate",
        cmd_evaluate,
        f"recompute {artifacts.METRICS} and {artifacts.CLASS_REPORT} from {artifacts.PREDICTIONS}",
        "run_dir",
    )
    p.add_argument(
        "--write_val_preds",
        action="store_true",
        help=f"first write {artifacts.PREDS_VAL} by reloading the run's model (runs made before it existed)",
    )
    p.add_argument(
        "--val_path",
        type=Path,
        default=None,
        help=f"validation split (default: the one in {artifacts.MANIFEST})",
    )
    p.add_argument("--device", default=None, help="cpu or cuda, for --write_val_preds")

    p = _command(
        sub,
        "prepare",
        cmd_prepare,
        "clean a raw CSV and write leakage-free stratified splits",
        "out_dir",
        "seed",
    )
    p.add_argument("--input", type=Path, default=None)
    _flag(p, "--text_col", "--text-col", default="Question")
    _flag(p, "--label_col", "--label-col", default="label")
    _flag(p, "--val_size", "--val-size", type=float, default=0.1)
    _flag(p, "--test_size", "--test-size", type=float, default=0.1)
    p.add_argument("--augment", choices=["none", "oversample"], default="none")
    p.add_argument(
        "--kaggle",
        action="store_true",
        help="download the competition files with the kaggle package",
    )
    p.add_argument("--competition", default="classification-of-math-problems-by-kasut-academy")
    p.add_argument(
        "--force",
        action="store_true",
        help="replace the split files of an earlier prepare in --out_dir (kept in a backup folder)",
    )

    p = _command(
        sub,
        "demo-data",
        cmd_demo_data,
        "write the offline demo corpus (splits) to --out_dir",
        "out_dir",
        "seed",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace split files in --out_dir (moved to a backup folder)",
    )

    p = _command(
        sub,
        "compare",
        cmd_compare,
        "McNemar's exact test and CI overlap for each pair of runs",
        "results_dir",
    )
    p.add_argument(
        "--runs", nargs="*", default=None, help="run folders (default: every complete run)"
    )

    p = _command(
        sub,
        "report",
        cmd_report,
        "execute notebooks/final_report.ipynb and export it (HTML, PDF)",
        "results_dir",
        "lang",
        "pdf",
    )
    p.add_argument("--model", default="minilm")
    p.add_argument(
        "--compare", nargs="*", default=None, help="other runs (default: every run found)"
    )
    _flag(p, "--output_dir", "--output-dir", type=Path, default=Path("results"))
    _flag(p, "--figures_dir", "--figures-dir", type=Path, default=Path("figures"))

    p = _command(
        sub,
        "pipeline",
        cmd_pipeline,
        f"train each model that lacks results ({export.TRAIN_NOTEBOOK.name}), then report",
        "results_dir",
        "lang",
        "pdf",
    )
    p.add_argument("--models", nargs="+", default=["tfidf", "minilm"])
    _flag(p, "--data_dir", "--data-dir", type=Path, default=Path("data"))
    p.add_argument(
        "--kernel",
        default=None,
        help="Jupyter kernel for the notebooks, training and report (e.g. a GPU machine's kernel)",
    )
    p.add_argument("--force", action="store_true", help="retrain models whose results exist")
    # Passed on to train_model.ipynb as papermill parameters; the leftover flags are Trainer's (training_args).
    options.add_flags(
        p, options.TrainConfig, ("num_epochs", "batch_size", "device", "load_in_4bit")
    )
    p.add_argument(
        "--model_path",
        nargs="+",
        default=None,
        metavar="[NAME=]PATH",
        help="local weights: PATH for the one model of --models that loads weights, or NAME=PATH each",
    )
    p.epilog = (
        "Any other flag is one of transformers' TrainingArguments (e.g. --gradient_accumulation_steps 4), "
        "passed to the training of each transformer model and checked by transformers before any starts."
    )
    _flag(
        p,
        "--report_model",
        "--report-model",
        default=None,
        help="the model the report is about (default: the last of --models)",
    )

    _add_engine_commands(sub)

    p = _command(
        sub,
        "ensemble",
        cmd_ensemble,
        "a run made from other runs' probabilities, weights fitted on validation",
        "results_dir",
    )
    p.add_argument(
        "--runs",
        nargs="+",
        required=True,
        help="member run directories (a bare name means results/NAME); each needs "
        f"{artifacts.PREDS_VAL}",
    )
    _flag(p, "--output_dir", "--output-dir", type=Path, default=Path("results/ensemble"))
    p.add_argument(
        "--method",
        choices=["loglinear", "linear"],
        default="loglinear",
        help="pool by weighted geometric mean (default) or weighted average of probabilities",
    )
    p.add_argument("--force", action="store_true", help="replace an existing run in --output_dir")

    from mathreport import memplan  # light: no torch until a plan is made

    p = _command(
        sub,
        "plan",
        cmd_plan,
        "estimate a model's GPU memory for training, part by part, and which GPUs "
        "it fits; loads no weights",
    )
    p.add_argument(
        "--model", required=True, help="a preset (qwen, mistral, ...), a hub id or a model folder"
    )
    p.add_argument(
        "--model_path",
        default=None,
        help="a local folder (or .gguf file) whose config.json to read",
    )
    p.add_argument(
        "--gpu_memory",
        type=float,
        default=None,
        metavar="GIB",
        help="also compare with a GPU of this much memory (GiB); exit status 2 when it does not fit",
    )
    p.add_argument(
        "--batch_size", type=_positive_int, default=None, help="per device (default: the preset's)"
    )
    p.add_argument("--gradient_accumulation_steps", type=_positive_int, default=1)
    p.add_argument(
        "--eval_batch_size",
        type=_positive_int,
        default=None,
        help="default: as train, max(batch_size, 32)",
    )
    p.add_argument(
        "--max_length", type=_positive_int, default=None, help="tokens (default: the preset's)"
    )
    p.add_argument(
        "--load_in_4bit",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="4-bit NF4 QLoRA (default: as train on CUDA, on for decoders)",
    )
    p.add_argument(
        "--gradient_checkpointing",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="default: as train, on in 4-bit",
    )
    p.add_argument(
        "--lora_mlp", action="store_true", help="LoRA on the MLP projections too (decoders)"
    )
    p.add_argument(
        "--optimizer",
        default="adamw_torch",
        choices=sorted(memplan.OPTIMIZER_STATE_BYTES),
        help="TrainingArguments' optim",
    )
    p.add_argument("--compute_dtype", choices=["bfloat16", "float16"], default="bfloat16")
    p.add_argument("--json", action="store_true", help="the plan as JSON (bytes)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `mathreport` console script."""
    parser = build_parser()
    args, leftover = parser.parse_known_args(argv)
    if leftover and args.command not in ("train", "search", "pipeline"):
        parser.error(f"unrecognized arguments: {' '.join(leftover)}")
    args.training_args = (
        leftover  # Trainer's own flags (TrainingArguments), checked by options.trainer_overrides
    )
    try:
        args.func(args)
    except MathreportError as exc:  # a message that names the file or flag and the fix: one line
        from mathreport import environment

        if (
            environment.process_rank() == 0
        ):  # under torchrun every process stops with it; one says why
            print(f"mathreport {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        # A notebook that failed inside papermill: its own error is the message, the cell traceback is noise.
        if type(exc).__name__ == "PapermillExecutionError":
            print(
                f"mathreport {args.command}: error in a notebook cell: {exc.ename}: {exc.evalue}",
                file=sys.stderr,
            )
            return 2
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
