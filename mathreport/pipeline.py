"""Orchestration: use the split files in data/ (or write the demo corpus), train what is missing, then report.

`run_pipeline` is `mathreport pipeline` and `make report`: each model whose run directory is missing or
incomplete is trained through `notebooks/train_model.ipynb` (so the run leaves an executed notebook), the
ensemble is fitted after its members, then `export.run_report` makes the report; runs already complete are
never retrained unless `force`. The training options `train` takes (`--model_path`, `--batch_size`, `--device`,
`--load_in_4bit`, Trainer's own flags) reach the notebook as papermill parameters. `write_comparisons` writes the
pairwise tests of several runs.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from mathreport import artifacts, data, options, presets
from mathreport.errors import ConfigError, DataError
from mathreport.export import TRAIN_NOTEBOOK, execute, run_report

DATA_FILES = (data.TRAIN_FILE, data.VAL_FILE, data.TEST_FILE)


def ensure_data(data_dir: Path) -> str:
    """Use the split files in `data_dir`, or write the offline demo corpus there when it has none."""
    data_dir = Path(data_dir)
    present = [name for name in DATA_FILES if (data_dir / name).is_file()]
    if len(present) == len(DATA_FILES):
        print(f"using the split files in {data_dir}/ as they are")
        return "existing"
    if present:
        missing = sorted(set(DATA_FILES) - set(present))
        raise DataError(
            f"{data_dir}/ has {', '.join(present)} but not {', '.join(missing)}; refusing to mix them with demo "
            f"data. Make all three with `mathreport prepare --input RAW.csv --out_dir {data_dir}`, or move them away."
        )
    from mathreport import demo

    print(
        f"{data_dir}/ has no split files: writing the offline demo corpus there (not the real Kaggle data)"
    )
    demo.write_demo_corpus(data_dir)
    return "demo"


def weights_of(models: list[str], model_path: list[str] | None) -> dict[str, str]:
    """{member model: its --model_path} from `--model_path DIR` or `--model_path NAME=DIR ...`, checked.

    A bare DIR belongs to the one member that loads weights (tfidf and `ensemble` load none) and is refused when
    there are several; `NAME=DIR` names its model, which must be one of `models`. Paths are made absolute, since
    the notebook's kernel may start in another folder.
    """
    members = [name for name in models if name != "ensemble"]
    loading = [name for name in members if presets.get_preset(name).traits.neural]
    out: dict[str, str] = {}
    for value in model_path or []:
        name, sep, path = value.partition("=")
        if sep and name not in members and not Path(value).expanduser().exists():
            raise ConfigError(
                f"--model_path {value}: {name} is not one of --models ({', '.join(members)})"
            )
        if not sep or name not in members:  # a bare path (an existing one may itself hold "=")
            if len(loading) != 1 or len(model_path) != 1:
                raise ConfigError(
                    f"--model_path {value}: {len(loading)} of --models load weights ({', '.join(loading) or 'none'}); "
                    "a bare path needs exactly one, otherwise name each model's weights: --model_path "
                    + " ".join(f"{n}=DIR" for n in loading or ["NAME"])
                )
            name, path = loading[0], value
        if name not in loading:
            raise ConfigError(
                f"--model_path {value}: {name} loads no weights (TF-IDF is trained from the data)"
            )
        if name in out:
            raise ConfigError(f"--model_path {value}: {name} is given weights twice")
        full = Path(path).expanduser()
        if not full.exists():
            raise ConfigError(
                f"--model_path {value}: {full} does not exist; download the weights there first "
                "(docs/GPU.md: hf download REPO --local-dir DIR)"
            )
        out[name] = str(full.resolve())
    return out


def _check_options(values: dict) -> None:
    """The same one-line checks `train` makes (mathreport/options.py), before any model is trained."""
    for name, (rule, allowed) in options.rules().items():
        if name in values and not rule(values[name]):
            raise ConfigError(f"--{name} {values[name]!r}: must be {allowed}")
    options.trainer_overrides(values.get("training_args") or [])


def run_pipeline(
    models: list[str],
    data_dir: Path = Path("data"),
    results_dir: Path = Path("results"),
    kernel: str | None = None,
    force: bool = False,
    num_epochs: int | None = None,
    report_model: str | None = None,
    pdf: bool = False,
    lang: str = "tr",
    model_path: list[str] | None = None,
    batch_size: int | None = None,
    device: str | None = None,
    load_in_4bit: bool | None = None,
    training_args: list[str] | None = None,
) -> dict[str, Path]:
    """Train (through `train_model.ipynb`) each model whose results are missing or incomplete, then report.

    num_epochs: for every model; None: each preset's own. model_path: `DIR` for the one member that loads
    weights, or `NAME=DIR` per model (`weights_of`). batch_size, device, load_in_4bit and training_args
    (TrainingArguments flags, as `train` takes them) go to every transformer model; TF-IDF takes none of them.
    kernel: the Jupyter kernel of every notebook, the training ones and the report.
    """
    weights = weights_of(models, model_path)
    tuning = {
        "batch_size": batch_size,
        "device": device,
        "load_in_4bit": load_in_4bit,
        "training_args": list(training_args or []),
    }
    _check_options({"num_epochs": num_epochs, **tuning})
    ensure_data(data_dir)
    results_dir = Path(results_dir)
    members = [name for name in models if name != "ensemble"]
    for name in members:
        run_dir = results_dir / name
        if artifacts.is_complete(run_dir) and not force:
            print(f"{run_dir}: complete results found, not retraining (use --force to retrain)")
            continue
        resume = artifacts.has_checkpoints(run_dir)
        # An incomplete run directory is the pipeline's own unfinished output: continue or redo it.
        redo = force or (run_dir.is_dir() and not resume)
        print(
            f"{run_dir}: training {name} via notebooks/train_model.ipynb"
            + (" (resuming)" if resume else "")
        )
        if run_dir.is_dir() and redo:
            shutil.rmtree(run_dir / artifacts.CHECKPOINTS, ignore_errors=True)
        train, val, test = (str(Path(data_dir) / file) for file in DATA_FILES)
        # TF-IDF refuses Trainer flags and warns about the others: it is given none of them.
        own = tuning if presets.get_preset(name).traits.neural else {}
        execute(
            TRAIN_NOTEBOOK,
            run_dir / "train_model.ipynb",
            {
                "model": name,
                "num_epochs": num_epochs,
                "learning_rate": None,
                "train_path": train,
                "val_path": val,
                "test_path": test,
                "output_dir": str(run_dir),
                "resume": resume,
                "force": redo,
                "model_path": weights.get(name),
                **own,
            },
            kernel=kernel,
            stream=True,
        )
    if "ensemble" in models:  # built after its members, from every other model named
        from mathreport import ensemble

        run_dir = results_dir / "ensemble"
        if ensemble.is_current(run_dir) and not force:
            print(f"{run_dir}: an ensemble of the current member results exists, not refitting it")
        else:
            print(
                f"{run_dir}: fitting the ensemble of {', '.join(members)} on the validation split"
            )
            ensemble.build_ensemble([results_dir / name for name in members], run_dir, force=True)
            print(ensemble.summary_line(run_dir))
    paths = run_report(
        model=report_model or models[-1],
        results_dir=results_dir,
        output_dir=results_dir,
        lang=lang,
        pdf=pdf,
        kernel=kernel,
    )
    if len(models) > 1:
        paths["comparisons"] = write_comparisons(results_dir, models)
    return paths


def write_comparisons(results_dir: Path, names: list[str]) -> Path:
    """Write `results_dir/comparisons.json`: McNemar's exact test and CI overlap for each pair of runs."""
    from mathreport import summary

    runs = summary.load_runs(Path(results_dir), names[0], names[1:])
    return artifacts.write_comparisons(results_dir, summary.comparisons(runs))
