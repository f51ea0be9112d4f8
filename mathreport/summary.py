"""What the report says: loading the runs it is about, its tables, and prose generated from the numbers.

The notebook `notebooks/final_report.ipynb` calls these functions and displays what they return; every
number in the report passes through here from a run's files, never from the notebook's own text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mathreport import artifacts
from mathreport.labels import NUM_CLASSES, names
from mathreport.markup import dollar_math, escape_html, md, md_code, question_html

TEXT = {
    "tr": {
        "title": "Matematik Analiz Motoru — Model Değerlendirme Raporu",
        "data": "Veri",
        "summary": "Özet Metrikler Tablosu",
        "overview": "Özet",
        "training": "Eğitim Dinamikleri",
        "roc": "ROC Eğrisi Analizi",
        "pr": "Kesinlik-Duyarlılık Eğrileri",
        "confusion": "Karışıklık Matrisi",
        "per_class": "Konu Bazında Analiz",
        "classic": "Klasik Performans Metrikleri",
        "f1": "F1 Skorları",
        "latency": "Gecikme Analizi",
        "latency_vs_acc": "Performans ve Gecikme Karşılaştırması",
        "calibration": "Kalibrasyon",
        "errors": "Hata Analizi",
        "conclusion": "Sonuç ve Değerlendirme",
        "setup": "Kurulum ve Kütüphaneler",
        "runs": "Model Eğitimleri",
        "lr": "Hiperparametre Araması",
        "model": "Model",
        "banner": "**Uyarı: gerçek yarışma sonucu değil.** Bu rapordaki şu çalıştırmalar gerçek veriyle eğitilmiş bir "
                  "modelden gelmiyor: {runs}. Onlara ait sayılar modellerin gerçek başarısı olarak okunmamalıdır.",
        "banner_synthetic": "sentetik, testler için üretilmiş sonuçlar",
        "banner_demo": "çevrimdışı demo derlemiyle eğitildi",
    },
    "en": {
        "title": "Math Analysis Engine — Model Evaluation Report",
        "data": "Data",
        "summary": "Summary Metrics Table",
        "overview": "Overview",
        "training": "Training Dynamics",
        "roc": "ROC Curve Analysis",
        "pr": "Precision-Recall Curves",
        "confusion": "Confusion Matrix",
        "per_class": "Per-Topic Analysis",
        "classic": "Classic Performance Metrics",
        "f1": "F1 Scores",
        "latency": "Latency Analysis",
        "latency_vs_acc": "Performance vs Latency",
        "calibration": "Calibration",
        "errors": "Error Analysis",
        "conclusion": "Conclusion",
        "setup": "Setup and Libraries",
        "runs": "Model Training Runs",
        "lr": "Hyperparameter Search",
        "model": "Model",
        "banner": "**Warning: not real competition results.** These runs in this report do not come from a model "
                  "trained on real data: {runs}. Their numbers must not be read as the models' real performance.",
        "banner_synthetic": "synthetic results made for tests",
        "banner_demo": "trained on the offline demo corpus",
    },
}

# What each section shows and how to read it: the notebook's markdown cells (Turkish) and the English report.
INTRO = {
    "tr": {
        "title": "Bu rapordaki her sayı `results/<model>/` altındaki çalıştırma dosyalarından hesaplanır; hiçbir "
                 "değer elle yazılmaz. Parametreler ilk kod hücresindedir (`model`, `compare`, `results_dir`, "
                 "`figures_dir`, `lang`); papermill ile `-p model qwen` gibi değiştirilir.",
        "overview": "Raporun ele aldığı model, karşılaştırılan modeller ve makro F1'e göre öndeki model. "
                    "Ayrıntılar ve testler aşağıdaki bölümlerdedir.",
        "data": "Eğitim, doğrulama ve test kümelerinin boyutları, dosyaların SHA-256 özetleri, temizlik adımlarının "
                "sayıları ve konu başına soru sayıları. Grafik, konuların kümeler içindeki payını karşılaştırır.",
        "setup": "Her çalıştırmanın kullandığı kütüphane sürümleri ve donanım (`run.json`). Sonucu yeniden üretmek "
                 "için aynı sürümler kullanılmalıdır.",
        "lr": "Doğrulama kümesinde denenen öğrenme oranları ve skorları; yıldız en iyi oranı gösterir. Test kümesi "
              "bu seçimde kullanılmaz.",
        "runs": "Her modelin tam eğitim komutu, hiperparametreleri ve eğitim hızı; komut çalıştırmayı aynen tekrarlar.",
        "summary": "Her modelin test kümesindeki başlıca metrikleri ve parti boyutu 1'deki medyan gecikmesi. "
                   "Metrikler 0–1 arasındadır ve yüksek olan daha iyidir; gecikmede düşük olan daha iyidir.",
        "classic": "Doğruluk, makro kesinlik ve makro duyarlılık; her model için bir çubuk. Makro ortalama her konuya "
                   "eşit ağırlık verir.",
        "f1": "Mikro, makro ve ağırlıklı F1. Makro F1'in ağırlıklı F1'den belirgin düşük olması, küçük konularda "
              "modelin daha zayıf olduğunu gösterir.",
        "roc": "Her konu için bire-karşı-hepsi ROC eğrisi ve mikro/makro ortalamalar: eğri sol üst köşeye ne kadar "
               "yakınsa (AUC ne kadar yüksekse) ayırma o kadar iyidir. Kesinlik-duyarlılık eğrileri aynı soruyu "
               "dengesiz konular için yanıtlar.",
        "confusion": "Satırlar gerçek konuyu, sütunlar tahmini gösterir; her satır 1'e normalize edilmiştir. "
                     "Köşegen dışındaki koyu hücreler en sık karıştırılan konu çiftleridir.",
        "per_class": "Konu başına F1 (tüm modeller) ve ana modelin kesinlik, duyarlılık, AUC ve destek (test sorusu "
                     "sayısı) değerleri.",
        "training": "Epok başına eğitim ve doğrulama kaybı ve doğruluğu. Eğitim kaybı düşerken doğrulama kaybının "
                    "artması aşırı öğrenmeye işaret eder.",
        "latency": "Parti boyutu başına soru başı gecikme (p50/p95/p99, ms) ve saniyedeki soru sayısı, ölçüldüğü "
                   "donanım ve veri tipiyle. Farklı donanımda ölçülen gecikmeler doğrudan karşılaştırılamaz.",
        "latency_vs_acc": "Üst panel her modelin doğruluğunu, alt panel parti boyutu 1'deki medyan gecikmesini "
                          "gösterir; aynı sütundaki iki çubuk aynı modele aittir.",
        "calibration": "Güvenilirlik diyagramı, tahmin güvenine göre gruplanan soruların gerçek doğruluğunu gösterir; "
                       "köşegene yakın çubuklar iyi kalibrasyon demektir. Alttaki dağılım doğru ve yanlış "
                       "tahminlerin güvenini karşılaştırır.",
        "errors": "En sık karıştırılan konu çiftleri ve her biri için en fazla üç örnek soru, test kümesinden "
                  "olduğu gibi.",
        "conclusion": "Metrik başına önde olan model, en iyi iki model arasındaki McNemar testi ve gecikme "
                      "ödünleşimi; hepsi yukarıdaki sayılardan üretilir.",
    },
    "en": {
        "title": "Every number in this report is computed from the run files under `results/<model>/`; none is "
                 "typed in. The parameters are in the first code cell (`model`, `compare`, `results_dir`, "
                 "`figures_dir`, `lang`); papermill changes them, e.g. `-p model qwen`.",
        "overview": "The model the report is about, the models it is compared with, and the leader by macro F1.",
        "data": "Sizes of the train, validation and test splits, SHA-256 of their files, the counts of each cleaning "
                "step and questions per topic. The chart compares each topic's share in each split.",
        "setup": "Library versions and hardware of each run (`run.json`); reproducing a result needs the same "
                 "versions.",
        "lr": "The learning rates tried on the validation split and their scores; the star marks the best rate. "
              "The test split plays no part in this choice.",
        "runs": "The exact training command of each model, its hyperparameters and training speed; the command "
                "repeats the run.",
        "summary": "The headline test metrics of each model and its median latency at batch size 1. Metrics are in "
                   "0–1, higher is better; for latency lower is better.",
        "classic": "Accuracy, macro precision and macro recall, one bar per model. Macro averages weigh every topic "
                   "equally.",
        "f1": "Micro, macro and weighted F1. A macro F1 clearly below the weighted F1 means the model is weaker on "
              "the small topics.",
        "roc": "One-vs-rest ROC curve per topic with micro/macro averages: the closer to the top-left corner (the "
               "higher the AUC), the better the separation. Precision-recall curves answer the same for "
               "imbalanced topics.",
        "confusion": "Rows are the true topic, columns the prediction; each row is normalised to 1. Dark cells off "
                     "the diagonal are the pairs of topics confused most often.",
        "per_class": "F1 per topic (all models) and the main model's precision, recall, AUC and support (number of "
                     "test questions).",
        "training": "Training and validation loss and accuracy per epoch. Training loss falling while validation "
                    "loss rises points to overfitting.",
        "latency": "Per-question latency per batch size (p50/p95/p99, ms) and questions per second, with the "
                   "hardware and dtype it was measured with. Latencies measured on different hardware are not "
                   "directly comparable.",
        "latency_vs_acc": "The top panel shows each model's accuracy, the bottom panel its median latency at batch "
                          "size 1; the two bars in one column belong to the same model.",
        "calibration": "The reliability diagram shows the real accuracy of questions grouped by the confidence of "
                       "the prediction; bars close to the diagonal mean good calibration. The distribution below "
                       "compares the confidence of right and wrong predictions.",
        "errors": "The pairs of topics confused most often, with up to three example questions each, as they are "
                  "in the test split.",
        "conclusion": "The leader per metric, McNemar's test between the two best models and the latency trade-off; "
                      "all generated from the numbers above.",
    },
}


SUMMARY_COLUMNS = ["Accuracy", "Precision_macro", "Recall_macro", "F1_micro", "F1_macro", "F1_weighted",
                   "AUC_macro"]


def text(key: str, lang: str = "tr") -> str:
    """A fixed piece of report text (a heading or note) in the report's language."""
    return TEXT[lang][key]


class MissingResultsError(artifacts.ArtifactError):
    """The report was asked about a model that has no (complete) results."""


@dataclass
class Run:
    """Everything a report reads of one run directory."""

    name: str
    path: Path
    metrics: dict
    class_report: dict
    predictions: pd.DataFrame
    history: pd.DataFrame
    latency: dict | None
    manifest: dict | None


def load_run(results_dir: Path, name: str) -> Run:
    """Read and validate one run; a missing run or file raises MissingResultsError saying what to do."""
    run_dir = Path(results_dir) / name
    if not run_dir.is_dir():
        raise MissingResultsError(
            f"no results for model {name!r}: {run_dir}/ does not exist. Train it with "
            f"`mathreport train --model {name} --output_dir {run_dir}` (qwen and mistral need a GPU machine "
            f"with their weights), or copy its results/{name}/ folder from the machine that trained it."
        )
    missing = artifacts.missing_files(run_dir)
    if missing:
        raise MissingResultsError(
            f"results for model {name!r} are incomplete: {run_dir}/ lacks {', '.join(missing)}. "
            f"Make them with: {artifacts.make_command(run_dir)}"
        )
    optional = {}
    for key, reader, filename in (("latency", artifacts.read_latency, artifacts.LATENCY),
                                  ("manifest", artifacts.read_manifest, artifacts.MANIFEST)):
        optional[key] = reader(run_dir) if (run_dir / filename).is_file() else None
    # The team's folders are named after their models; run.json may give a display name of its own.
    return Run(
        name=(optional["manifest"] or {}).get("display_name") or name,
        path=run_dir,
        metrics=artifacts.read_metrics(run_dir),
        class_report=artifacts.read_class_report(run_dir),
        predictions=artifacts.read_predictions(run_dir),
        history=artifacts.read_history(run_dir),
        **optional,
    )


def load_runs(results_dir: Path, model: str, compare: list[str] | None = None) -> dict[str, Run]:
    """The report's runs keyed by display name, the main model first; `compare=None`: every complete run found.

    Runs are named after their directories unless their run.json gives a `display_name`.
    """
    others = compare if compare is not None else [n for n in artifacts.find_runs(results_dir) if n != model]
    runs: dict[str, Run] = {}
    for directory in [model, *[n for n in others if n != model]]:
        run = load_run(results_dir, directory)
        if run.name in runs:
            raise artifacts.ArtifactError(
                f"two runs are both named {run.name!r} ({runs[run.name].path} and {run.path}); "
                "give one of them another display_name in its run.json"
            )
        runs[run.name] = run
    return runs


def summary_table(runs: dict[str, Run], lang: str = "tr") -> pd.DataFrame:
    """One row per model: the headline metrics, test size and batch-1 latency."""
    rows = []
    for name, run in runs.items():
        row = {text("model", lang): name}
        for col in SUMMARY_COLUMNS:
            row[col] = run.metrics.get(col)
        row["n_test"] = len(run.predictions)
        row["p50_ms (bs=1)"] = latency_p50(run)
        rows.append(row)
    return pd.DataFrame(rows).set_index(text("model", lang))


def latency_p50(run: Run, batch_size: int = 1) -> float | None:
    """Per-item p50 latency at a batch size, or None when the run has no such measurement."""
    if not run.latency:
        return None
    for entry in run.latency["results"]:
        if entry["batch_size"] == batch_size:
            return float(entry["p50_ms"])
    return None


def format_table(frame: pd.DataFrame, digits: int = 3):
    """A pandas Styler showing numbers with `digits` decimals and missing values as a dash.

    Every string in it (cells, row and column labels: run names, devices, paths) is HTML-escaped.
    """
    # A zero-width space after each "_" lets a narrow column's header ("Precision_macro") wrap there.
    styler = (frame.style.format(precision=digits, na_rep="—", escape="html")
              .format_index(escape="html", axis=0)
              .format_index(lambda label: str(label).replace("_", "_\u200b"), escape="html", axis=1))
    # Row numbers (a default RangeIndex) say nothing to the reader.
    return styler.hide(axis="index") if isinstance(frame.index, pd.RangeIndex) else styler


def is_synthetic(run: Run) -> bool:
    """Whether a run's run.json marks its results as synthetic (made for tests, not by training)."""
    return (run.manifest or {}).get("synthetic") is True


def uses_demo_data(runs: dict[str, Run]) -> bool:
    """Whether any run was trained on the offline demo corpus (per the prepare report beside its data)."""
    return any(_trained_on_demo(run) for run in runs.values())


def _trained_on_demo(run: Run) -> bool:
    return (_prepare_report(run) or {}).get("source") == "demo"


def banner(runs: dict[str, Run], lang: str = "tr") -> str:
    """A warning naming every run that is synthetic or trained on the demo corpus; "" when there is none."""
    flagged = []
    for name, run in runs.items():
        why = [text(key, lang) for key, hit in (("banner_synthetic", is_synthetic(run)),
                                                ("banner_demo", _trained_on_demo(run))) if hit]
        if why:
            flagged.append(f"**{md(name)}** ({md('; '.join(why))})")
    return text("banner", lang).format(runs=", ".join(flagged)) if flagged else ""


# --- prose and tables generated from the numbers ---------------------------------------------------

HEADLINE = ("Accuracy", "F1_macro", "F1_weighted", "AUC_macro")


def _f(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _ranked(runs: dict[str, Run], metric: str) -> list[tuple[str, float]]:
    values = [(n, r.metrics.get(metric)) for n, r in runs.items()]
    return sorted([(n, float(v)) for n, v in values if isinstance(v, (int, float))], key=lambda x: -x[1])


def winner(runs: dict[str, Run]) -> str:
    """The best model: highest F1_macro, ties broken by Accuracy (the order the conclusion uses)."""
    return max(runs, key=lambda n: (runs[n].metrics["F1_macro"], runs[n].metrics["Accuracy"]))


def leaders(runs: dict[str, Run], lang: str = "tr") -> list[str]:
    """One sentence per headline metric: which model leads and by how much over the next."""
    out = []
    for metric in HEADLINE:
        ranked = _ranked(runs, metric)
        if not ranked:
            continue
        (best, value), rest = ranked[0], ranked[1:]
        if not rest:
            out.append(f"{metric}: **{md(best)}** {_f(value)}")
            continue
        second, value2 = rest[0]
        best, second = md(best), md(second)
        gap = value - value2
        if lang == "tr":
            out.append(f"{metric}: **{best}** {_f(value)} ile önde; {second} {_f(value2)} "
                       f"(fark {_f(gap)}, {gap * 100:.1f} puan).")
        else:
            out.append(f"{metric}: **{best}** leads with {_f(value)}; {second} {_f(value2)} "
                       f"(gap {_f(gap)}, {gap * 100:.1f} points).")
    return out


def overview(runs: dict[str, Run], model: str, lang: str = "tr") -> str:
    """The report's opening paragraph: what was compared, on how many test questions, who leads."""
    listed = ", ".join(f"**{md(n)}**" for n in runs)
    n_test = len(runs[model].predictions)
    best = winner(runs)
    best_metrics = runs[best].metrics
    model, best = md(model), md(best)
    if lang == "tr":
        head = (f"Bu rapor **{model}** modelini ele alır ve {len(runs)} modeli karşılaştırır: {listed}. "
                f"Tüm sayılar `results/` altındaki çalıştırma dosyalarından hesaplanmıştır "
                f"({model} için {n_test} test sorusu). ")
        head += (f"Makro F1'e göre en iyi model **{best}** "
                 f"(F1_macro {_f(best_metrics['F1_macro'])}, Accuracy {_f(best_metrics['Accuracy'])}).")
    else:
        head = (f"This report is about **{model}** and compares {len(runs)} model(s): {listed}. "
                f"Every number is computed from the run files under `results/` ({n_test} test questions "
                f"for {model}). ")
        head += (f"By macro F1 the best model is **{best}** "
                 f"(F1_macro {_f(best_metrics['F1_macro'])}, Accuracy {_f(best_metrics['Accuracy'])}).")
    return head


def _prepare_report(run: Run) -> dict | None:
    train = ((run.manifest or {}).get("data") or {}).get("train", {}).get("path")
    if not train:
        return None
    path = Path(train).parent / "prepare_report.json"
    if not path.is_file():
        return None
    return artifacts.read_json(path)


def data_description(runs: dict[str, Run], lang: str = "tr") -> str:
    """Where the data came from, split sizes and cleaning counts, from run.json and prepare_report.json."""
    lines = []
    for name, run in runs.items():
        data = (run.manifest or {}).get("data")
        if not data:
            n = len(run.predictions)
            lines.append(f"- **{md(name)}**: " + (f"veri kaydı yok; test kümesi {n} soru (preds_test.csv)."
                                                  if lang == "tr" else
                                                  f"no data record; test set of {n} questions (preds_test.csv)."))
            continue
        sizes = ", ".join(f"{md(split)} {md(info.get('rows'))}" for split, info in data.items())
        files = ", ".join(f"{md_code(info.get('path'))} (sha256 {md(str(info.get('sha256'))[:12])})"
                          for info in data.values())
        lines.append(f"- **{md(name)}**: {sizes} — {files}")
    prep = next((p for p in map(_prepare_report, runs.values()) if p), None)
    if prep:
        lines.extend(cleaning_lines(prep, lang))
    return "\n".join(lines)


SOURCE_NAMES = {
    "tr": {"demo": "çevrimdışı demo derlemi (gerçek veri değil)", "kaggle": "Kaggle yarışma dosyaları",
           "file": "kullanıcının CSV dosyası"},
    "en": {"demo": "offline demo corpus (not real data)", "kaggle": "the Kaggle competition files",
           "file": "the user's CSV file"},
}
DROP_NAMES = {
    "tr": {"empty_after_cleaning": "temizlikten sonra boş", "label_conflict_minority": "etiket çakışması (azınlık)",
           "label_conflict_unresolved": "etiket çakışması (çözülemedi)", "duplicate_exact": "birebir tekrar",
           "duplicate_normalized": "boşluk/harf farkıyla tekrar"},
    "en": {"empty_after_cleaning": "empty after cleaning", "label_conflict_minority": "label conflict (minority)",
           "label_conflict_unresolved": "label conflict (unresolved)", "duplicate_exact": "exact duplicate",
           "duplicate_normalized": "whitespace/case duplicate"},
}


def cleaning_lines(prep: dict, lang: str = "tr") -> list[str]:
    """Source, rows in/kept, each cleaning step's count and augmentation, from prepare_report.json."""
    source = prep.get("source", "file")
    label = SOURCE_NAMES[lang].get(source, source)
    path = (prep.get("input") or {}).get("path", "")
    cleaning = prep.get("cleaning") or {}
    dropped = cleaning.get("rows_dropped") or {}
    changed = cleaning.get("rows_changed") or {}
    drops = ", ".join(f"{md(DROP_NAMES[lang].get(k, k))}: {md(v)}" for k, v in dropped.items())
    changes = ", ".join(f"{md(k)}: {md(v)}" for k, v in changed.items())
    aug = {k: md(v) for k, v in (prep.get("augmentation") or {}).items()}
    label, path = md(label), md_code(path)
    rows_in, rows_kept, per_split = md(prep.get("rows_in")), md(prep.get("rows_kept")), md(prep.get("rows_per_split"))
    if lang == "tr":
        out = [f"- Veri kaynağı: **{label}** ({path})",
               f"- Girdi satırı {rows_in}, tutulan {rows_kept}; atılanlar — {drops}",
               f"- Değiştirilen satırlar — {changes}",
               f"- Bölümler: {per_split}; artırma: {aug.get('method', 'none')} "
               f"(+{aug.get('rows_added', 0)} satır, yalnız eğitim kümesine)"]
    else:
        out = [f"- Data source: **{label}** ({path})",
               f"- Rows in {rows_in}, kept {rows_kept}; dropped — {drops}",
               f"- Rows changed — {changes}",
               f"- Splits: {per_split}; augmentation: {aug.get('method', 'none')} "
               f"(+{aug.get('rows_added', 0)} rows, train split only)"]
    return out


def split_class_counts(runs: dict[str, Run], lang: str = "tr") -> pd.DataFrame | None:
    """Class counts per split from prepare_report.json, with Turkish/English class names."""
    prep = next((p for p in map(_prepare_report, runs.values()) if p), None)
    if not prep or not prep.get("class_counts"):
        return None
    class_names = names(lang)
    frame = pd.DataFrame({split: [int(counts.get(str(i), counts.get(i, 0)) if isinstance(counts, dict) else 0)
                                  for i in range(NUM_CLASSES)]
                          for split, counts in prep["class_counts"].items()}, index=class_names)
    frame.index.name = "Konu" if lang == "tr" else "Topic"
    return frame


def class_counts(runs: dict[str, Run], lang: str = "tr") -> pd.DataFrame | None:
    """Test-set class counts of each run (from preds_test.csv), one column per run."""
    table = {}
    for name, run in runs.items():
        counts = run.predictions["y_true"].value_counts()
        table[name] = [int(counts.get(i, 0)) for i in range(NUM_CLASSES)]
    frame = pd.DataFrame(table, index=names(lang))
    frame.index.name = "Konu (test)" if lang == "tr" else "Topic (test)"
    return frame


def setup_table(runs: dict[str, Run], lang: str = "tr") -> pd.DataFrame:
    """Package versions and hardware of each run (from run.json)."""
    rows = {}
    for name, run in runs.items():
        manifest = run.manifest or {}
        row = dict(manifest.get("versions") or {})
        hw = manifest.get("hardware") or {}
        row["cpu"] = hw.get("cpu")
        row["cuda"] = hw.get("cuda")
        row["device"] = manifest.get("device", "cpu" if manifest else None)
        rows[name] = row
    return pd.DataFrame(rows).fillna("—")


def lr_searches(runs: dict[str, Run]) -> dict[str, pd.DataFrame]:
    """The learning-rate searches found beside each run (`<run>/lr_search.csv`)."""
    from mathreport.artifacts import LR_SEARCH, read_lr_search

    return {n: read_lr_search(r.path) for n, r in runs.items() if (r.path / LR_SEARCH).is_file()}


def no_lr_search(runs: dict[str, Run], lang: str = "tr") -> str:
    """Says plainly that no search was run, and how to run one."""
    if lang == "tr":
        return ("Bu çalıştırmalar için öğrenme oranı araması yapılmamış (`lr_search.csv` yok); "
                "rapor uydurma bir arama eğrisi göstermez. Çalıştırmak için: "
                "`mathreport search --model MODEL --lrs 1e-5 1e-4 2e-4 --output_dir results/MODEL`.")
    return ("No learning-rate search was run for these runs (no `lr_search.csv`); the report shows no "
            "invented curve. To run one: `mathreport search --model MODEL --lrs 1e-5 1e-4 2e-4 "
            "--output_dir results/MODEL`.")


def runs_description(runs: dict[str, Run], lang: str = "tr") -> str:
    """The exact command and settings of each run (from run.json)."""
    lines = []
    for name, run in runs.items():
        manifest = run.manifest or {}
        if not manifest.get("command"):
            if is_synthetic(run):
                why = "sentetik sonuçlar; eğitim yok." if lang == "tr" else "synthetic results; no training."
            else:
                why = ("eğitim kaydı yok (ekibin sonuç klasörü)." if lang == "tr"
                       else "no training record (the team's results folder).")
            lines.append(f"- **{md(name)}**: {why}")
            continue
        hyper = ", ".join(f"{k}={v}" for k, v in (manifest.get("hyperparameters") or {}).items() if v is not None)
        training = manifest.get("training") or {}
        speed = training.get("train_samples_per_second")
        seconds = training.get("train_seconds")
        numbers = isinstance(speed, (int, float)) and isinstance(seconds, (int, float)) and speed and seconds
        lines.append(f"- **{md(name)}** — {md_code(manifest['command'])}  \n  {md(manifest.get('description', ''))}; "
                     f"{md(hyper)}"
                     + (f"; {seconds:.0f} s, {speed:.1f} " + ("örnek/s" if lang == "tr" else "samples/s")
                        if numbers else "")
                     + (f"; LoRA {md(manifest['lora'])}" if manifest.get("lora") else ""))
    return "\n".join(lines)


def auc_sentence(run: Run, lang: str = "tr") -> str:
    """Macro/micro AUC over all 8 classes and the weakest class by AUC."""
    per_class = run.class_report["per_class"]
    aucs = [(int(k.split("_")[1]), v.get("auc")) for k, v in per_class.items() if v.get("auc") is not None]
    m = run.metrics
    if not aucs:
        return ""
    worst = min(aucs, key=lambda x: x[1])
    undefined = [(int(k.split("_")[1]), v.get("auc_undefined_reason", "")) for k, v in per_class.items()
                 if v.get("auc") is None]
    class_names = names(lang)
    if lang == "tr":
        out = (f"{md(run.name)}: 8 sınıfın tümü için bire-karşı-hepsi AUC hesaplandı; makro AUC "
               f"{_f(m.get('AUC_macro'))}, mikro AUC {_f(m.get('AUC_micro'))}. En düşük AUC: "
               f"{class_names[worst[0]]} ({_f(worst[1])}).")
        if undefined:
            out += " Tanımsız AUC: " + "; ".join(f"{class_names[i]} ({md(why)})" for i, why in undefined) + "."
    else:
        out = (f"{md(run.name)}: one-vs-rest AUC over all 8 classes; macro AUC {_f(m.get('AUC_macro'))}, "
               f"micro AUC {_f(m.get('AUC_micro'))}. Lowest AUC: {class_names[worst[0]]} ({_f(worst[1])}).")
        if undefined:
            out += " AUC undefined: " + "; ".join(f"{class_names[i]} ({md(why)})" for i, why in undefined) + "."
    return out


def per_class_table(run: Run, lang: str = "tr") -> pd.DataFrame:
    """Per-class precision, recall, F1, AUC and support of one run."""
    rows = []
    class_names = names(lang)
    for i in range(NUM_CLASSES):
        entry = run.class_report["per_class"][f"class_{i}"]
        rows.append({"precision": entry["precision"], "recall": entry["recall"], "f1_score": entry["f1_score"],
                     "auc": entry.get("auc"), "support": int(entry["support"])})
    frame = pd.DataFrame(rows, index=class_names)
    frame.index.name = "Konu" if lang == "tr" else "Topic"
    return frame


def per_class_sentence(run: Run, lang: str = "tr") -> str:
    """The strongest and weakest topics by F1."""
    table = per_class_table(run, lang)
    table = table[table["support"] > 0]
    best, worst = table["f1_score"].idxmax(), table["f1_score"].idxmin()
    if lang == "tr":
        return (f"{md(run.name)}: en iyi konu **{best}** (F1 {_f(table.loc[best, 'f1_score'])}), en zayıf konu "
                f"**{worst}** (F1 {_f(table.loc[worst, 'f1_score'])}, {int(table.loc[worst, 'support'])} test "
                "sorusu).")
    return (f"{md(run.name)}: best topic **{best}** (F1 {_f(table.loc[best, 'f1_score'])}), weakest **{worst}** "
            f"(F1 {_f(table.loc[worst, 'f1_score'])}, {int(table.loc[worst, 'support'])} test questions).")


def latency_table(runs: dict[str, Run], lang: str = "tr") -> pd.DataFrame:
    """One row per (model, batch size): per-item p50/p95/p99 and throughput, with the device."""
    rows = []
    for name, run in runs.items():
        if not run.latency:
            continue
        for entry in run.latency["results"]:
            rows.append({text("model", lang): name, "batch_size": entry["batch_size"], "p50_ms": entry["p50_ms"],
                         "p95_ms": entry["p95_ms"], "p99_ms": entry.get("p99_ms"),
                         "items_per_s": entry["items_per_s"], "device": run.latency["device"],
                         "dtype": run.latency.get("dtype")})
    return pd.DataFrame(rows)


def no_latency(lang: str = "tr") -> str:
    """Says that no run has a latency measurement."""
    return ("Gecikme ölçümü yok (`latency.json` bulunamadı): `mathreport bench --run_dir results/MODEL`."
            if lang == "tr" else
            "No latency measurement (no `latency.json`): `mathreport bench --run_dir results/MODEL`.")


def latency_sentence(runs: dict[str, Run], lang: str = "tr") -> str:
    """Which model answers fastest at batch size 1, on what hardware, and the accuracy it costs or gains."""
    measured = {n: (latency_p50(r), r.latency["device"]) for n, r in runs.items() if latency_p50(r) is not None}
    if not measured:
        return no_latency(lang)
    fastest = min(measured, key=lambda n: measured[n][0])
    devices = {d for _, d in measured.values()}
    parts = []
    for name, (p50, device) in measured.items():
        parts.append(f"{md(name)} {p50:.2f} ms ({md(device)})")
    same = len(devices) == 1
    fastest = md(fastest)
    if lang == "tr":
        out = f"Parti boyutu 1'de madde başına medyan gecikme: {'; '.join(parts)}. En hızlı model **{fastest}**."
        if not same:
            out += (" **Dikkat:** bu gecikmeler farklı donanımlarda ölçüldü; doğrudan karşılaştırılamaz.")
        else:
            out += f" Tüm ölçümler aynı donanımda yapıldı: {md(devices.pop())}."
    else:
        out = f"Median per-item latency at batch size 1: {'; '.join(parts)}. Fastest model: **{fastest}**."
        if not same:
            out += " **Caution:** these latencies were measured on different hardware and are not directly comparable."
        else:
            out += f" All measured on the same hardware: {md(devices.pop())}."
    return out


def calibration_sentence(runs: dict[str, Run], lang: str = "tr") -> str:
    """ECE and log-loss of each run."""
    parts = [f"{md(n)}: ECE {_f(r.metrics.get('ECE'))}, LogLoss {_f(r.metrics.get('LogLoss'))}" for n, r in runs.items()
             if r.metrics.get("ECE") is not None]
    if not parts:
        return ""
    head = ("Beklenen kalibrasyon hatası (15 kutu; düşük daha iyi): " if lang == "tr"
            else "Expected calibration error (15 bins; lower is better): ")
    return head + "; ".join(parts) + "."


QUESTION_CHARS = 240


def shorten_question(question: str, limit: int = QUESTION_CHARS) -> str:
    """A question cut to about `limit` characters, never inside a `$...$` or `$$...$$` math span."""
    question = dollar_math(question)
    if len(question) <= limit:
        return question
    cut = question[:limit]
    delimiters = [m.start() for m in re.finditer(r"(?<!\\)\$\$?", cut)]
    if len(delimiters) % 2:  # the cut falls inside a math span: end before it opens
        cut = cut[: delimiters[-1]]
    return cut.rstrip() + " …"


def error_analysis_html(run: Run, lang: str = "tr", k: int = 5) -> str:
    """The most frequent confusions with up to 3 example questions each, as HTML.

    The questions are data: their text is escaped and their LaTeX rendered as MathML (`markup.question_html`).
    """
    from mathreport import metrics

    frame = run.predictions
    texts = frame["text"].astype(str).tolist() if "text" in frame.columns else None
    confusions = metrics.top_confusions(frame["y_true"], frame["y_pred"], texts, k=k)
    if not confusions:
        return "<p>" + ("Test kümesinde hiç hata yok." if lang == "tr" else "No errors on the test set.") + "</p>"
    head = "en sık karışıklıklar (gerçek → tahmin):" if lang == "tr" else "most frequent confusions (true → predicted):"
    out = [f'<p><strong>{escape_html(run.name)}</strong> — {head}</p>', '<ul class="mathreport-errors">']
    for c in confusions:
        out.append(f"<li>{escape_html(c[f'true_name_{lang}'])} → {escape_html(c[f'pred_name_{lang}'])}: "
                   f"{int(c['count'])} {'soru' if lang == 'tr' else 'questions'} ({c['share_of_true'] * 100:.1f}%)")
        if c["examples"]:
            out.append('<ul class="mathreport-questions">')
            out.extend(f'<li class="mathreport-question">{question_html(shorten_question(q))}</li>'
                       for q in c["examples"])
            out.append("</ul>")
        out.append("</li>")
    out.append("</ul>")
    return "\n".join(out)


def significance(runs: dict[str, Run], a: str, b: str) -> dict | None:
    """McNemar's exact test and CI overlap between two runs, or None when their test items differ."""
    from mathreport import metrics

    pa, pb = runs[a].predictions, runs[b].predictions
    if len(pa) != len(pb) or not (pa["y_true"].to_numpy() == pb["y_true"].to_numpy()).all():
        return None
    # The team's metrics.json has no intervals: bootstrap them from the predictions, as metrics.json would.
    cis = {n: runs[n].metrics.get("ci95") or metrics.bootstrap_ci(runs[n].predictions["y_true"],
                                                                   runs[n].predictions["y_pred"])
           for n in (a, b)}
    return metrics.compare_runs({a: (pa["y_true"], pa["y_pred"]), b: (pb["y_true"], pb["y_pred"])}, cis)[0]


def conclusion(runs: dict[str, Run], model: str, lang: str = "tr") -> str:
    """The conclusion, generated from the numbers: leader per metric, significance, latency trade-off."""
    best_key = winner(runs)
    best = md(best_key)
    lines = leaders(runs, lang)
    others = [n for n in runs if n != best_key]
    if others:
        ranked = sorted(others, key=lambda n: (runs[n].metrics["F1_macro"], runs[n].metrics["Accuracy"]),
                        reverse=True)
        test = significance(runs, best_key, ranked[0])
        second = md(ranked[0])
        if test is None:
            lines.append(f"{best} ve {second} farklı test kümelerinde değerlendirildi; eşli test yapılamaz."
                         if lang == "tr" else
                         f"{best} and {second} were evaluated on different test sets; no paired test is possible.")
        else:
            sig = test["p_value"] < 0.05
            overlap = test.get("ci_overlap", {})
            if lang == "tr":
                lines.append(
                    f"McNemar kesin testi ({best} vs {second}, {test['n']} soru; yalnız {best} doğru: {test['b']}, "
                    f"yalnız {second} doğru: {test['c']}): p = {test['p_value']:.4f} — fark "
                    + ("**istatistiksel olarak anlamlı** (p < 0.05)." if sig else "**anlamlı değil** (p ≥ 0.05).")
                    + (f" Accuracy %95 güven aralıkları {'örtüşüyor' if overlap.get('Accuracy') else 'örtüşmüyor'}."
                       if overlap else ""))
            else:
                lines.append(
                    f"McNemar's exact test ({best} vs {second}, {test['n']} questions; only {best} right: "
                    f"{test['b']}, only {second} right: {test['c']}): p = {test['p_value']:.4f} — the difference is "
                    + ("**statistically significant** (p < 0.05)." if sig else "**not significant** (p ≥ 0.05).")
                    + (f" The 95% CIs of Accuracy {'overlap' if overlap.get('Accuracy') else 'do not overlap'}."
                       if overlap else ""))
    p50_best = latency_p50(runs[best_key])
    measured = {n: latency_p50(r) for n, r in runs.items() if latency_p50(r) is not None}
    if p50_best is not None and len(measured) > 1:
        fastest = min(measured, key=measured.get)
        if fastest != best_key:
            ratio = p50_best / measured[fastest]
            fastest_ms, fastest = measured[fastest], md(fastest)
            lines.append(
                f"Gecikme ödünleşimi: {best}, {fastest} modelinden {ratio:.1f} kat yavaş "
                f"({p50_best:.2f} ms vs {fastest_ms:.2f} ms, parti boyutu 1)." if lang == "tr" else
                f"Latency trade-off: {best} is {ratio:.1f}x slower than {fastest} "
                f"({p50_best:.2f} ms vs {fastest_ms:.2f} ms at batch size 1).")
        else:
            lines.append(f"{best} aynı zamanda en hızlı model." if lang == "tr"
                         else f"{best} is also the fastest model.")
    verdict = (f"**Sonuç:** makro F1'e göre en iyi model **{best}**." if lang == "tr"
               else f"**Conclusion:** by macro F1 the best model is **{best}**.")
    return "\n".join(["- " + line for line in lines] + ["", verdict])


def comparisons(runs: dict[str, Run]) -> list[dict]:
    """McNemar's exact test and 95% CI overlap for every pair of runs evaluated on the same test items.

    Pairs whose test items differ are listed with `comparable: false` and the reason, not tested.
    """
    from itertools import combinations

    rows = []
    for a, b in combinations(runs, 2):
        test = significance(runs, a, b)
        # run_a/run_b are display names; dir_a/dir_b the run folders they were read from.
        where = {"dir_a": runs[a].path.name, "dir_b": runs[b].path.name}
        if test is None:
            rows.append({"run_a": a, "run_b": b, **where, "comparable": False,
                         "reason": "different test items (sizes or y_true differ)"})
        else:
            rows.append({"comparable": True, **test, **where})
    return rows


def comparisons_table(runs: dict[str, Run], lang: str = "tr") -> pd.DataFrame:
    """The pairwise comparisons as a table for the report."""
    rows = []
    for c in comparisons(runs):
        overlap = c.get("ci_overlap") or {}
        rows.append({
            "A": c["run_a"], "B": c["run_b"],
            "Accuracy A": c.get("accuracy_a"), "Accuracy B": c.get("accuracy_b"),
            ("yalnız A doğru" if lang == "tr" else "only A right"): c.get("b"),
            ("yalnız B doğru" if lang == "tr" else "only B right"): c.get("c"),
            "McNemar p": c.get("p_value"),
            ("GA örtüşür (Acc)" if lang == "tr" else "CI overlap (Acc)"): overlap.get("Accuracy"),
            ("GA örtüşür (F1)" if lang == "tr" else "CI overlap (F1)"): overlap.get("F1_macro"),
        })
    return pd.DataFrame(rows)
