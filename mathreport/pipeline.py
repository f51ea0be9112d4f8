"""Orchestration: use the split files in data/ (or write the demo corpus), train what is missing, then report.

`run_pipeline` is `mathreport pipeline` and `make report`: each model whose run directory is missing or
incomplete is trained through `notebooks/train_model.ipynb` (so the run leaves an executed notebook), the
ensemble is fitted after its members, then `export.run_report` makes the report; runs already complete are
never retrained unless `force`. `write_comparisons` writes the pairwise tests of several runs.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from mathreport import artifacts, data, files
from mathreport.errors import DataError
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
            f"data. Make all three with `mathreport prepare --input RAW.csv --out-dir {data_dir}`, or move them away."
        )
    from mathreport import demo

    print(f"{data_dir}/ has no split files: writing the offline demo corpus there (not the real Kaggle data)")
    demo.write_demo_corpus(data_dir)
    return "demo"


def run_pipeline(models: list[str], data_dir: Path = Path("data"), results_dir: Path = Path("results"),
                 kernel: str | None = None, force: bool = False, num_epochs: int | None = None,
                 report_model: str | None = None, pdf: bool = False, lang: str = "tr") -> dict[str, Path]:
    """Train (through `train_model.ipynb`) each model whose results are missing or incomplete, then report.

    num_epochs: for every model; None: each preset's own.
    """
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
        print(f"{run_dir}: training {name} via notebooks/train_model.ipynb" + (" (resuming)" if resume else ""))
        if run_dir.is_dir() and redo:
            shutil.rmtree(run_dir / artifacts.CHECKPOINTS, ignore_errors=True)
        train, val, test = (str(Path(data_dir) / file) for file in DATA_FILES)
        execute(TRAIN_NOTEBOOK, run_dir / "train_model.ipynb",
                {"model": name, "num_epochs": num_epochs, "learning_rate": None, "train_path": train, "val_path": val,
                 "test_path": test, "output_dir": str(run_dir), "resume": resume, "force": redo},
                kernel=kernel, stream=True)
    if "ensemble" in models:  # built after its members, from every other model named
        from mathreport import ensemble

        run_dir = results_dir / "ensemble"
        if ensemble.is_current(run_dir) and not force:
            print(f"{run_dir}: an ensemble of the current member results exists, not refitting it")
        else:
            print(f"{run_dir}: fitting the ensemble of {', '.join(members)} on the validation split")
            ensemble.build_ensemble([results_dir / name for name in members], run_dir, force=True)
            print(ensemble.summary_line(run_dir))
    paths = run_report(model=report_model or models[-1], results_dir=results_dir, output_dir=results_dir,
                       lang=lang, pdf=pdf)
    if len(models) > 1:
        paths["comparisons"] = write_comparisons(results_dir, models)
    return paths


def write_comparisons(results_dir: Path, names: list[str]) -> Path:
    """Write `results_dir/comparisons.json`: McNemar's exact test and CI overlap for each pair of runs."""
    from mathreport import summary

    runs = summary.load_runs(Path(results_dir), names[0], names[1:])
    return files.write_json(Path(results_dir) / "comparisons.json", {"pairs": summary.comparisons(runs)})
