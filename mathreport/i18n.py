"""Every word a reader sees, one table per language with the keys and placeholders of `TR`; adding a language is
adding one table (`register` checks it). Messages are `str.format` templates with named placeholders; what goes
into one is data, formatted and escaped by the caller. Topic names (`class.<id>`) come from `labels.TOPICS`."""

from __future__ import annotations

import string
from collections.abc import Iterator, Mapping

from mathreport.errors import MissingMessageError, UnknownLanguageError
from mathreport.labels import NUM_CLASSES, TOPICS

TR: dict[str, str] = {
    # report.*: the title, the section headings and the banner (the notebook's headings; summary.TEXT)
    "report.title": "Matematik Analiz Motoru — Model Değerlendirme Raporu",
    "report.data": "Veri",
    "report.summary": "Özet Metrikler Tablosu",
    "report.overview": "Özet",
    "report.training": "Eğitim Dinamikleri",
    "report.roc": "ROC Eğrisi Analizi",
    "report.pr": "Kesinlik-Duyarlılık Eğrileri",
    "report.confusion": "Karışıklık Matrisi",
    "report.per_class": "Konu Bazında Analiz",
    "report.classic": "Klasik Performans Metrikleri",
    "report.f1": "F1 Skorları",
    "report.latency": "Gecikme Analizi",
    "report.latency_vs_acc": "Performans ve Gecikme Karşılaştırması",
    "report.calibration": "Kalibrasyon",
    "report.errors": "Hata Analizi",
    "report.conclusion": "Sonuç ve Değerlendirme",
    "report.setup": "Kurulum ve Kütüphaneler",
    "report.runs": "Model Eğitimleri",
    "report.lr": "Hiperparametre Araması",
    "report.model": "Model",
    "report.banner": ("**Uyarı: gerçek yarışma sonucu değil.** Bu rapordaki şu çalıştırmalar gerçek veriyle "
                      "eğitilmiş bir modelden gelmiyor: {runs}. Onlara ait sayılar modellerin gerçek başarısı olarak "
                      "okunmamalıdır."),
    "report.banner_synthetic": "sentetik, testler için üretilmiş sonuçlar",
    "report.banner_demo": "çevrimdışı demo derlemiyle eğitildi",
    # intro.*: what each section shows and how to read it, in section order (summary.INTRO)
    "intro.title": ("Bu rapordaki her sayı `results/<model>/` altındaki çalıştırma dosyalarından hesaplanır; hiçbir "
                    "değer elle yazılmaz. Parametreler ilk kod hücresindedir (`model`, `compare`, `results_dir`, "
                    "`figures_dir`, `lang`); papermill ile `-p model qwen` gibi değiştirilir."),
    "intro.overview": ("Raporun ele aldığı model, karşılaştırılan modeller ve makro F1'e göre öndeki model. "
                       "Ayrıntılar ve testler aşağıdaki bölümlerdedir."),
    "intro.data": ("Eğitim, doğrulama ve test kümelerinin boyutları, dosyaların SHA-256 özetleri, temizlik "
                   "adımlarının sayıları ve konu başına soru sayıları. Grafik, konuların kümeler içindeki payını "
                   "karşılaştırır."),
    "intro.setup": ("Her çalıştırmanın kullandığı kütüphane sürümleri ve donanım (`run.json`). Sonucu yeniden "
                    "üretmek için aynı sürümler kullanılmalıdır."),
    "intro.lr": ("Doğrulama kümesinde denenen öğrenme oranları ve skorları; yıldız en iyi oranı gösterir. Test "
                 "kümesi bu seçimde kullanılmaz."),
    "intro.runs": ("Her modelin tam eğitim komutu, hiperparametreleri ve eğitim hızı; komut çalıştırmayı aynen "
                   "tekrarlar."),
    "intro.summary": ("Her modelin test kümesindeki başlıca metrikleri ve parti boyutu 1'deki medyan gecikmesi. "
                      "Metrikler 0–1 arasındadır ve yüksek olan daha iyidir; gecikmede düşük olan daha iyidir."),
    "intro.classic": ("Doğruluk, makro kesinlik ve makro duyarlılık; her model için bir çubuk. Makro ortalama her "
                      "konuya eşit ağırlık verir."),
    "intro.f1": ("Mikro, makro ve ağırlıklı F1. Makro F1'in ağırlıklı F1'den belirgin düşük olması, küçük konularda "
                 "modelin daha zayıf olduğunu gösterir."),
    "intro.roc": ("Her konu için bire-karşı-hepsi ROC eğrisi ve mikro/makro ortalamalar: eğri sol üst köşeye ne "
                  "kadar yakınsa (AUC ne kadar yüksekse) ayırma o kadar iyidir. Kesinlik-duyarlılık eğrileri aynı "
                  "soruyu dengesiz konular için yanıtlar."),
    "intro.confusion": ("Satırlar gerçek konuyu, sütunlar tahmini gösterir; her satır 1'e normalize edilmiştir. "
                        "Köşegen dışındaki koyu hücreler en sık karıştırılan konu çiftleridir."),
    "intro.per_class": ("Konu başına F1 (tüm modeller) ve ana modelin kesinlik, duyarlılık, AUC ve destek (test "
                        "sorusu sayısı) değerleri."),
    "intro.training": ("Epok başına eğitim ve doğrulama kaybı ve doğruluğu. Eğitim kaybı düşerken doğrulama kaybının "
                       "artması aşırı öğrenmeye işaret eder."),
    "intro.latency": ("Parti boyutu başına soru başı gecikme (p50/p95/p99, ms) ve saniyedeki soru sayısı, ölçüldüğü "
                      "donanım ve veri tipiyle. Farklı donanımda ölçülen gecikmeler doğrudan karşılaştırılamaz."),
    "intro.latency_vs_acc": ("Üst panel her modelin doğruluğunu, alt panel parti boyutu 1'deki medyan gecikmesini "
                             "gösterir; aynı sütundaki iki çubuk aynı modele aittir."),
    "intro.calibration": ("Güvenilirlik diyagramı, tahmin güvenine göre gruplanan soruların gerçek doğruluğunu "
                          "gösterir; köşegene yakın çubuklar iyi kalibrasyon demektir. Alttaki dağılım doğru ve "
                          "yanlış tahminlerin güvenini karşılaştırır."),
    "intro.errors": ("En sık karıştırılan konu çiftleri ve her biri için en fazla üç örnek soru, test kümesinden "
                     "olduğu gibi."),
    "intro.conclusion": ("Metrik başına önde olan model, en iyi iki model arasındaki McNemar testi ve gecikme "
                         "ödünleşimi; hepsi yukarıdaki sayılardan üretilir."),
    # summary.*: prose and table labels made from the numbers; values arrive formatted and escaped
    "summary.topic": "Konu",
    "summary.topic_test": "Konu (test)",
    "summary.leader": "{metric}: **{best}** {value} ile önde; {second} {value2} (fark {gap}, {gap_points:.1f} puan).",
    "summary.leader_alone": "{metric}: **{best}** {value}",
    "summary.overview": ("Bu rapor **{model}** modelini ele alır ve {n_runs} modeli karşılaştırır: {runs}. Tüm "
                         "sayılar `results/` altındaki çalıştırma dosyalarından hesaplanmıştır ({model} için "
                         "{n_test} test sorusu). Makro F1'e göre en iyi model **{best}** (F1_macro {f1_macro}, "
                         "Accuracy {accuracy})."),
    "summary.no_data_record": "veri kaydı yok; test kümesi {n_test} soru (preds_test.csv).",
    "summary.cleaning_source": "Veri kaynağı: **{source}** ({path})",
    "summary.cleaning_rows": "Girdi satırı {rows_in}, tutulan {rows_kept}; atılanlar — {dropped}",
    "summary.cleaning_changed": "Değiştirilen satırlar — {changed}",
    "summary.cleaning_splits": "Bölümler: {splits}; artırma: {method} (+{rows_added} satır, yalnız eğitim kümesine)",
    "summary.no_lr_search": ("Bu çalıştırmalar için öğrenme oranı araması yapılmamış (`lr_search.csv` yok); rapor "
                             "uydurma bir arama eğrisi göstermez. Çalıştırmak için: `mathreport search --model MODEL "
                             "--lrs 1e-5 1e-4 2e-4 --output_dir results/MODEL`."),
    "summary.run_synthetic": "sentetik sonuçlar; eğitim yok.",
    "summary.run_no_record": "eğitim kaydı yok (ekibin sonuç klasörü).",
    "summary.run_speed": "{seconds:.0f} s, {speed:.1f} örnek/s",
    "summary.auc": ("{run}: {n_classes} sınıfın tümü için bire-karşı-hepsi AUC hesaplandı; makro AUC {macro}, mikro "
                    "AUC {micro}. En düşük AUC: {worst} ({worst_auc})."),
    "summary.auc_undefined": "Tanımsız AUC: {classes}.",
    "summary.macro_excluded": ("{run}: makro kesinlik, duyarlılık ve F1, ne test etiketlerinde ne de tahminlerde "
                               "bulunan {n} sınıfı ortalamaya katmaz: {classes}."),
    "summary.per_class": ("{run}: en iyi konu **{best}** (F1 {best_f1}), en zayıf konu **{worst}** (F1 {worst_f1}, "
                          "{worst_support} test sorusu)."),
    "summary.no_latency": "Gecikme ölçümü yok (`latency.json` bulunamadı): `mathreport bench --run_dir results/MODEL`.",
    "summary.latency_part": "{run} {p50_ms:.2f} ms ({device})",
    "summary.latency": "Parti boyutu 1'de madde başına medyan gecikme: {parts}. En hızlı model **{fastest}**.",
    "summary.latency_other_hardware": ("**Dikkat:** bu gecikmeler farklı donanımlarda ölçüldü; doğrudan "
                                       "karşılaştırılamaz."),
    "summary.latency_same_hardware": "Tüm ölçümler aynı donanımda yapıldı: {device}.",
    "summary.calibration": "Beklenen kalibrasyon hatası (15 kutu; düşük daha iyi): {parts}.",
    "summary.calibration_part": "{run}: ECE {ece}, LogLoss {log_loss}",
    "summary.no_errors": "Test kümesinde hiç hata yok.",
    "summary.errors_head": "en sık karışıklıklar (gerçek → tahmin):",
    "summary.errors_pair": "{true} → {pred}: {count} soru ({share_percent:.1f}%)",
    "summary.different_tests": "{best} ve {second} farklı test kümelerinde değerlendirildi; eşli test yapılamaz.",
    "summary.mcnemar": ("McNemar kesin testi ({best} vs {second}, {n} soru; yalnız {best} doğru: {b}, yalnız "
                        "{second} doğru: {c}): p = {p_value:.4f} — fark {verdict}"),
    "summary.significant": "**istatistiksel olarak anlamlı** (p < {alpha}).",
    "summary.not_significant": "**anlamlı değil** (p ≥ {alpha}).",
    "summary.ci_overlap": "Accuracy %95 güven aralıkları örtüşüyor.",
    "summary.ci_no_overlap": "Accuracy %95 güven aralıkları örtüşmüyor.",
    "summary.latency_trade_off": ("Gecikme ödünleşimi: {best}, {fastest} modelinden {ratio:.1f} kat yavaş "
                                  "({best_ms:.2f} ms vs {fastest_ms:.2f} ms, parti boyutu 1)."),
    "summary.also_fastest": "{best} aynı zamanda en hızlı model.",
    "summary.verdict": "**Sonuç:** makro F1'e göre en iyi model **{best}**.",
    "summary.only_a_right": "yalnız A doğru",
    "summary.only_b_right": "yalnız B doğru",
    "summary.ci_overlap_accuracy": "GA örtüşür (Acc)",
    "summary.ci_overlap_f1": "GA örtüşür (F1)",
    # sections.*: words of the report sections themselves (notebook.ReportContext)
    "sections.one_step_fit": "tek adımda eğitildi (epoch eğrisi yok).",
    # source.* / drop.*: prepare_report.json's data source and cleaning steps
    "source.demo": "çevrimdışı demo derlemi (gerçek veri değil)",
    "source.kaggle": "Kaggle yarışma dosyaları",
    "source.file": "kullanıcının CSV dosyası",
    "drop.empty_after_cleaning": "temizlikten sonra boş",
    "drop.label_conflict_minority": "etiket çakışması (azınlık)",
    "drop.label_conflict_unresolved": "etiket çakışması (çözülemedi)",
    "drop.duplicate_exact": "birebir tekrar",
    "drop.duplicate_normalized": "boşluk/harf farkıyla tekrar",
    # plot.*: figure titles, axis labels and legends (plots)
    "plot.lr_title": "Öğrenme oranı taraması",
    "plot.lr_x": "Öğrenme oranı (log ölçek)",
    "plot.lr_y": "Doğrulama skoru",
    "plot.val_accuracy": "Doğrulama doğruluğu",
    "plot.val_macro_f1": "Doğrulama makro F1",
    "plot.best": "En iyi",
    "plot.roc_title": "ROC eğrileri (bire karşı hepsi)",
    "plot.fpr": "Yanlış pozitif oranı",
    "plot.tpr": "Doğru pozitif oranı",
    "plot.micro": "Mikro ortalama",
    "plot.macro": "Makro ortalama",
    "plot.chance": "Şans düzeyi",
    "plot.undefined": "tanımsız",
    "plot.absent": "testte örnek yok",
    "plot.only_class": "testteki tek sınıf",
    "plot.pr_title": "Kesinlik–duyarlılık eğrileri",
    "plot.recall": "Duyarlılık",
    "plot.precision": "Kesinlik",
    "plot.latency": "Gecikme (ms)",
    "plot.accuracy": "Doğruluk",
    "plot.model": "Model",
    "plot.score": "Skor",
    "plot.metric_bars_title": "Doğruluk, kesinlik ve duyarlılık",
    "plot.f1_bars_title": "F1 skorları",
    "plot.cm_title": "Karışıklık matrisi",
    "plot.cm_normalized": "satıra göre normalize",
    "plot.true_class": "Gerçek sınıf",
    "plot.pred_class": "Tahmin edilen sınıf",
    "plot.row_share": "Satır oranı",
    "plot.count": "Örnek sayısı",
    "plot.per_class_title": "Sınıf bazında F1 skoru",
    "plot.class": "Sınıf",
    "plot.f1": "F1 skoru",
    "plot.curves_title": "Eğitim eğrileri",
    "plot.loss": "Kayıp",
    "plot.epoch": "Epok",
    "plot.train": "Eğitim",
    "plot.val": "Doğrulama",
    "plot.reliability_title": "Güvenilirlik diyagramı",
    "plot.confidence": "Güven (tahmin edilen sınıfın olasılığı)",
    "plot.perfect": "Mükemmel kalibrasyon",
    "plot.confidence_title": "Doğru ve yanlış tahminlerin güveni",
    "plot.right": "Doğru tahmin",
    "plot.wrong": "Yanlış tahmin",
    "plot.share": "Pay",
    "plot.distribution_title": "Konu dağılımı",
    "plot.share_percent": "Soruların payı (%)",
    "plot.accuracy_title": "Doğruluk",
    "plot.latency_panel_title": "Parti boyutu 1'de medyan gecikme",
    # metric.*: metric names on figure axes
    "metric.Accuracy": "Doğruluk",
    "metric.Precision_macro": "Kesinlik (makro)",
    "metric.Recall_macro": "Duyarlılık (makro)",
    "metric.F1_micro": "F1 (mikro)",
    "metric.F1_macro": "F1 (makro)",
    "metric.F1_weighted": "F1 (ağırlıklı)",
    # train_notebook.*: the markdown cells of notebooks/train_model.ipynb (tools/make_notebooks.py)
    "train_notebook.intro": "# Bir modeli eğit ve değerlendir\n\nBu defter tek bir modeli eğitir, test kümesinde "
                            "değerlendirir ve sonuçları `results/<model>/` klasörüne yazar (`mathreport pipeline` her "
                            "model için bunu çalıştırır). Komut satırından: `papermill train_model.ipynb out.ipynb "
                            "-p model minilm` (GPU çekirdeği için `-k ÇEKİRDEK`).",
    "train_notebook.training": "## Eğitim\n\nEğitim kümesiyle eğitir, her epokta doğrulama kümesini ölçer; ilerleme "
                               "çubuğu adımları gösterir. Sonuç klasörü zaten doluysa `force = True` olmadan üzerine "
                               "yazılmaz.",
    "train_notebook.results": "## Sonuçlar\n\nEpok başına kayıp ve doğruluk (`history.csv`) ve test kümesindeki "
                              "metrikler (`metrics.json`); hepsi az önce yazılan dosyalardan okunur.",
    # class.<id>: the topic names, from labels
    **{f"class.{topic.id}": topic.tr for topic in TOPICS},
}

EN: dict[str, str] = {
    "report.title": "Math Analysis Engine — Model Evaluation Report",
    "report.data": "Data",
    "report.summary": "Summary Metrics Table",
    "report.overview": "Overview",
    "report.training": "Training Dynamics",
    "report.roc": "ROC Curve Analysis",
    "report.pr": "Precision-Recall Curves",
    "report.confusion": "Confusion Matrix",
    "report.per_class": "Per-Topic Analysis",
    "report.classic": "Classic Performance Metrics",
    "report.f1": "F1 Scores",
    "report.latency": "Latency Analysis",
    "report.latency_vs_acc": "Performance vs Latency",
    "report.calibration": "Calibration",
    "report.errors": "Error Analysis",
    "report.conclusion": "Conclusion",
    "report.setup": "Setup and Libraries",
    "report.runs": "Model Training Runs",
    "report.lr": "Hyperparameter Search",
    "report.model": "Model",
    "report.banner": ("**Warning: not real competition results.** These runs in this report do not come from a model "
                      "trained on real data: {runs}. Their numbers must not be read as the models' real performance."),
    "report.banner_synthetic": "synthetic results made for tests",
    "report.banner_demo": "trained on the offline demo corpus",
    "intro.title": ("Every number in this report is computed from the run files under `results/<model>/`; none is "
                    "typed in. The parameters are in the first code cell (`model`, `compare`, `results_dir`, "
                    "`figures_dir`, `lang`); papermill changes them, e.g. `-p model qwen`."),
    "intro.overview": "The model the report is about, the models it is compared with, and the leader by macro F1.",
    "intro.data": ("Sizes of the train, validation and test splits, SHA-256 of their files, the counts of each "
                   "cleaning step and questions per topic. The chart compares each topic's share in each split."),
    "intro.setup": ("Library versions and hardware of each run (`run.json`); reproducing a result needs the same "
                    "versions."),
    "intro.lr": ("The learning rates tried on the validation split and their scores; the star marks the best rate. "
                 "The test split plays no part in this choice."),
    "intro.runs": ("The exact training command of each model, its hyperparameters and training speed; the command "
                   "repeats the run."),
    "intro.summary": ("The headline test metrics of each model and its median latency at batch size 1. Metrics are "
                      "in 0–1, higher is better; for latency lower is better."),
    "intro.classic": ("Accuracy, macro precision and macro recall, one bar per model. Macro averages weigh every "
                      "topic equally."),
    "intro.f1": ("Micro, macro and weighted F1. A macro F1 clearly below the weighted F1 means the model is weaker "
                 "on the small topics."),
    "intro.roc": ("One-vs-rest ROC curve per topic with micro/macro averages: the closer to the top-left corner (the "
                  "higher the AUC), the better the separation. Precision-recall curves answer the same for "
                  "imbalanced topics."),
    "intro.confusion": ("Rows are the true topic, columns the prediction; each row is normalised to 1. Dark cells "
                        "off the diagonal are the pairs of topics confused most often."),
    "intro.per_class": ("F1 per topic (all models) and the main model's precision, recall, AUC and support (number "
                        "of test questions)."),
    "intro.training": ("Training and validation loss and accuracy per epoch. Training loss falling while validation "
                       "loss rises points to overfitting."),
    "intro.latency": ("Per-question latency per batch size (p50/p95/p99, ms) and questions per second, with the "
                      "hardware and dtype it was measured with. Latencies measured on different hardware are not "
                      "directly comparable."),
    "intro.latency_vs_acc": ("The top panel shows each model's accuracy, the bottom panel its median latency at "
                             "batch size 1; the two bars in one column belong to the same model."),
    "intro.calibration": ("The reliability diagram shows the real accuracy of questions grouped by the confidence of "
                          "the prediction; bars close to the diagonal mean good calibration. The distribution below "
                          "compares the confidence of right and wrong predictions."),
    "intro.errors": ("The pairs of topics confused most often, with up to three example questions each, as they are "
                     "in the test split."),
    "intro.conclusion": ("The leader per metric, McNemar's test between the two best models and the latency "
                         "trade-off; all generated from the numbers above."),
    "summary.topic": "Topic",
    "summary.topic_test": "Topic (test)",
    "summary.leader": ("{metric}: **{best}** leads with {value}; {second} {value2} (gap {gap}, {gap_points:.1f} "
                       "points)."),
    "summary.leader_alone": "{metric}: **{best}** {value}",
    "summary.overview": ("This report is about **{model}** and compares {n_runs} model(s): {runs}. Every number is "
                         "computed from the run files under `results/` ({n_test} test questions for {model}). By "
                         "macro F1 the best model is **{best}** (F1_macro {f1_macro}, Accuracy {accuracy})."),
    "summary.no_data_record": "no data record; test set of {n_test} questions (preds_test.csv).",
    "summary.cleaning_source": "Data source: **{source}** ({path})",
    "summary.cleaning_rows": "Rows in {rows_in}, kept {rows_kept}; dropped — {dropped}",
    "summary.cleaning_changed": "Rows changed — {changed}",
    "summary.cleaning_splits": "Splits: {splits}; augmentation: {method} (+{rows_added} rows, train split only)",
    "summary.no_lr_search": ("No learning-rate search was run for these runs (no `lr_search.csv`); the report shows "
                             "no invented curve. To run one: `mathreport search --model MODEL --lrs 1e-5 1e-4 2e-4 "
                             "--output_dir results/MODEL`."),
    "summary.run_synthetic": "synthetic results; no training.",
    "summary.run_no_record": "no training record (the team's results folder).",
    "summary.run_speed": "{seconds:.0f} s, {speed:.1f} samples/s",
    "summary.auc": ("{run}: one-vs-rest AUC over all {n_classes} classes; macro AUC {macro}, micro AUC {micro}. "
                    "Lowest AUC: {worst} ({worst_auc})."),
    "summary.auc_undefined": "AUC undefined: {classes}.",
    "summary.macro_excluded": ("{run}: macro precision, recall and F1 leave out the {n} classes that neither the test "
                               "labels nor the predictions contain: {classes}."),
    "summary.per_class": ("{run}: best topic **{best}** (F1 {best_f1}), weakest **{worst}** (F1 {worst_f1}, "
                          "{worst_support} test questions)."),
    "summary.no_latency": "No latency measurement (no `latency.json`): `mathreport bench --run_dir results/MODEL`.",
    "summary.latency_part": "{run} {p50_ms:.2f} ms ({device})",
    "summary.latency": "Median per-item latency at batch size 1: {parts}. Fastest model: **{fastest}**.",
    "summary.latency_other_hardware": ("**Caution:** these latencies were measured on different hardware and are not "
                                       "directly comparable."),
    "summary.latency_same_hardware": "All measured on the same hardware: {device}.",
    "summary.calibration": "Expected calibration error (15 bins; lower is better): {parts}.",
    "summary.calibration_part": "{run}: ECE {ece}, LogLoss {log_loss}",
    "summary.no_errors": "No errors on the test set.",
    "summary.errors_head": "most frequent confusions (true → predicted):",
    "summary.errors_pair": "{true} → {pred}: {count} questions ({share_percent:.1f}%)",
    "summary.different_tests": "{best} and {second} were evaluated on different test sets; no paired test is possible.",
    "summary.mcnemar": ("McNemar's exact test ({best} vs {second}, {n} questions; only {best} right: {b}, only "
                        "{second} right: {c}): p = {p_value:.4f} — the difference is {verdict}"),
    "summary.significant": "**statistically significant** (p < {alpha}).",
    "summary.not_significant": "**not significant** (p ≥ {alpha}).",
    "summary.ci_overlap": "The 95% CIs of Accuracy overlap.",
    "summary.ci_no_overlap": "The 95% CIs of Accuracy do not overlap.",
    "summary.latency_trade_off": ("Latency trade-off: {best} is {ratio:.1f}x slower than {fastest} ({best_ms:.2f} ms "
                                  "vs {fastest_ms:.2f} ms at batch size 1)."),
    "summary.also_fastest": "{best} is also the fastest model.",
    "summary.verdict": "**Conclusion:** by macro F1 the best model is **{best}**.",
    "summary.only_a_right": "only A right",
    "summary.only_b_right": "only B right",
    "summary.ci_overlap_accuracy": "CI overlap (Acc)",
    "summary.ci_overlap_f1": "CI overlap (F1)",
    "sections.one_step_fit": "fitted in one step (no epoch curve).",
    "source.demo": "offline demo corpus (not real data)",
    "source.kaggle": "the Kaggle competition files",
    "source.file": "the user's CSV file",
    "drop.empty_after_cleaning": "empty after cleaning",
    "drop.label_conflict_minority": "label conflict (minority)",
    "drop.label_conflict_unresolved": "label conflict (unresolved)",
    "drop.duplicate_exact": "exact duplicate",
    "drop.duplicate_normalized": "whitespace/case duplicate",
    "plot.lr_title": "Learning-rate search",
    "plot.lr_x": "Learning rate (log scale)",
    "plot.lr_y": "Validation score",
    "plot.val_accuracy": "Validation accuracy",
    "plot.val_macro_f1": "Validation macro F1",
    "plot.best": "Best",
    "plot.roc_title": "ROC curves (one-vs-rest)",
    "plot.fpr": "False positive rate",
    "plot.tpr": "True positive rate",
    "plot.micro": "Micro-average",
    "plot.macro": "Macro-average",
    "plot.chance": "Chance level",
    "plot.undefined": "undefined",
    "plot.absent": "no test samples",
    "plot.only_class": "only class in test",
    "plot.pr_title": "Precision–recall curves",
    "plot.recall": "Recall",
    "plot.precision": "Precision",
    "plot.latency": "Latency (ms)",
    "plot.accuracy": "Accuracy",
    "plot.model": "Model",
    "plot.score": "Score",
    "plot.metric_bars_title": "Accuracy, precision and recall",
    "plot.f1_bars_title": "F1 scores",
    "plot.cm_title": "Confusion matrix",
    "plot.cm_normalized": "row-normalised",
    "plot.true_class": "True class",
    "plot.pred_class": "Predicted class",
    "plot.row_share": "Share of row",
    "plot.count": "Count",
    "plot.per_class_title": "Per-class F1 score",
    "plot.class": "Class",
    "plot.f1": "F1 score",
    "plot.curves_title": "Training curves",
    "plot.loss": "Loss",
    "plot.epoch": "Epoch",
    "plot.train": "Training",
    "plot.val": "Validation",
    "plot.reliability_title": "Reliability diagram",
    "plot.confidence": "Confidence (probability of the predicted class)",
    "plot.perfect": "Perfect calibration",
    "plot.confidence_title": "Confidence of right and wrong predictions",
    "plot.right": "Right prediction",
    "plot.wrong": "Wrong prediction",
    "plot.share": "Share",
    "plot.distribution_title": "Topic distribution",
    "plot.share_percent": "Share of questions (%)",
    "plot.accuracy_title": "Accuracy",
    "plot.latency_panel_title": "Median latency at batch size 1",
    "metric.Accuracy": "Accuracy",
    "metric.Precision_macro": "Precision (macro)",
    "metric.Recall_macro": "Recall (macro)",
    "metric.F1_micro": "F1 (micro)",
    "metric.F1_macro": "F1 (macro)",
    "metric.F1_weighted": "F1 (weighted)",
    "train_notebook.intro": "# Train and evaluate one model\n\nThis notebook trains one model, evaluates it on the "
                            "test split and writes the results to `results/<model>/` (`mathreport pipeline` runs it "
                            "for each model). From the command line: `papermill train_model.ipynb out.ipynb -p model "
                            "minilm` (`-k KERNEL` for a GPU kernel).",
    "train_notebook.training": "## Training\n\nTrains on the training split and measures the validation split after "
                               "each epoch; a progress bar shows the steps. A results folder that already holds a run "
                               "is not replaced without `force = True`.",
    "train_notebook.results": "## Results\n\nLoss and accuracy per epoch (`history.csv`) and the test-split metrics "
                              "(`metrics.json`), all read from the files just written.",
    **{f"class.{topic.id}": topic.en for topic in TOPICS},
}

CATALOG: dict[str, dict[str, str]] = {"tr": TR, "en": EN}
REFERENCE = "tr"


def languages() -> list[str]:
    """The languages that have a table, sorted."""
    return sorted(CATALOG)


def table(lang: str) -> Mapping[str, str]:
    """The whole table of one language; an unknown language raises UnknownLanguageError naming the known ones."""
    try:
        return CATALOG[lang]
    except (KeyError, TypeError):
        raise UnknownLanguageError(f"lang must be one of {languages()}, got {lang!r}") from None


def message(key: str, lang: str = "tr", **values: object) -> str:
    """The message `key` in language `lang`, filled from `values`; MissingMessageError for a missing key or value."""
    messages = table(lang)
    if key not in messages:
        raise MissingMessageError(
            f"no message {key!r} in the {lang!r} table of mathreport.i18n "
            f"(every language needs the keys of the {REFERENCE!r} table)"
        )
    try:
        return messages[key].format(**values)
    except KeyError as missing:
        raise MissingMessageError(
            f"message {key!r} ({lang!r}) needs a value for placeholder {missing}; given {sorted(values)}"
        ) from None


def class_names(lang: str = "tr") -> list[str]:
    """The topic names in class-id order, in language `lang`."""
    return [message(f"class.{i}", lang) for i in range(NUM_CLASSES)]


def placeholders(template: str) -> set[str]:
    """The names of a template's placeholders (`{run}`, `{p_value:.4f}` -> run, p_value)."""
    names = set()
    for _, field, _, _ in string.Formatter().parse(template):
        if field is not None:
            if not field or field.isdigit():
                raise ValueError(f"template {template!r} has a positional placeholder; name every placeholder")
            names.add(field.split(".")[0].split("[")[0])
    return names


def register(lang: str, messages: Mapping[str, str]) -> None:
    """Add (or replace) the table of `lang`; ValueError if its keys or placeholders differ from the reference's."""
    reference = CATALOG[REFERENCE]
    problems = []
    missing, extra = sorted(set(reference) - set(messages)), sorted(set(messages) - set(reference))
    if missing:
        problems.append(f"missing keys {missing}")
    if extra:
        problems.append(f"keys the {REFERENCE!r} table does not have: {extra}")
    for key in sorted(set(reference) & set(messages)):
        want, found = placeholders(reference[key]), placeholders(messages[key])
        if want != found:
            problems.append(f"{key!r} has placeholders {sorted(found)}; the {REFERENCE!r} one has {sorted(want)}")
    if problems:
        raise ValueError(f"the {lang!r} message table is incomplete: " + "; ".join(problems))
    CATALOG[lang] = dict(messages)


class Section(Mapping):
    """One group of messages per language, read live from the catalog, in table order: `Section("intro.")["en"]`."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __getitem__(self, lang: str) -> dict[str, str]:
        if lang not in CATALOG:
            raise KeyError(lang)
        return {k[len(self.prefix):]: v for k, v in CATALOG[lang].items() if k.startswith(self.prefix)}

    def __iter__(self) -> Iterator[str]:
        return iter(CATALOG)

    def __len__(self) -> int:
        return len(CATALOG)
