"""Command-line pieces that many tests pass."""

from __future__ import annotations

from pathlib import Path


def split_flags(data_dir: Path) -> list[str]:
    """--train_path/--val_path/--test_path for the three split files `prepare` writes into `data_dir`."""
    return [
        "--train_path",
        str(Path(data_dir) / "augmented_train.csv"),
        "--val_path",
        str(Path(data_dir) / "val_split.csv"),
        "--test_path",
        str(Path(data_dir) / "test_split.csv"),
    ]
