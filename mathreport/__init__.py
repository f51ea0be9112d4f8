"""mathreport: reproducible training, evaluation and Turkish reporting for math-topic classifiers."""

__version__ = "0.1.0"
