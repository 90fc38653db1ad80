"""``hf:`` sources: Hugging Face datasets, saved on disk or named on the hub.

``hf:PATH`` loads a dataset saved with ``save_to_disk`` (``datasets.load_from_disk``) or a folder of
data files (``datasets.load_dataset(PATH)``); ``hf:NAME`` loads a hub dataset, which needs the network:
with HF_HUB_OFFLINE=1 (the embedded default) it fails with a one-line error. ``datasets`` is imported
inside the functions: only ``hf:`` sources pay for it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd

from compactlm.errors import DataError

HF_PREFIX = "hf:"


def hf_local_path(spec: str) -> Path | None:
    """The folder an ``hf:PATH`` source names when it exists on disk, else None (a hub name).

    Args:
        spec: the source, with its ``hf:`` prefix (``~`` is expanded).
    """
    path = Path(spec.removeprefix(HF_PREFIX)).expanduser()
    return path if path.exists() else None


def _is_saved_dataset(path: Path) -> bool:
    return (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()


def read_hf_dataset(spec: str, split: str | None = None) -> pd.DataFrame:
    """Rows of a Hugging Face dataset: ``hf:PATH`` (saved or a data folder) or ``hf:NAME`` (the hub).

    Args:
        spec: the source, with its ``hf:`` prefix.
        split: one split of a dataset dict; None concatenates every split (in name order).

    Returns:
        One frame, column names stripped of surrounding spaces.

    Raises:
        DataError: an unknown split, an unreadable or empty dataset, or a hub dataset while the hub is
            unreachable.
    """
    import datasets

    target = spec.removeprefix(HF_PREFIX)
    path = hf_local_path(spec)
    datasets.disable_progress_bars()
    try:
        if path is not None:
            if _is_saved_dataset(path):
                loaded = datasets.load_from_disk(str(path))
            else:
                with tempfile.TemporaryDirectory(prefix="compactlm-hf-") as cache:
                    loaded = datasets.load_dataset(str(path), cache_dir=cache)
                    return _to_frame(loaded, split, spec)
        else:
            loaded = datasets.load_dataset(target)
    except (ConnectionError, OSError) as exc:
        if path is None:
            offline = " (HF_HUB_OFFLINE=1)" if os.environ.get("HF_HUB_OFFLINE") == "1" else ""
            raise DataError(f"Hugging Face dataset {target!r}: the hub is unreachable{offline}; download the "
                            f"dataset where the network allows and pass its local path as hf:PATH") from None
        raise DataError(f"Hugging Face dataset {target}: {str(exc).splitlines()[0][:200]}") from None
    except Exception as exc:  # datasets raises many types for broken folders
        raise DataError(f"Hugging Face dataset {target}: not loadable ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:160]})") from None
    return _to_frame(loaded, split, spec)


def _to_frame(loaded, split: str | None, spec: str) -> pd.DataFrame:
    import datasets

    if isinstance(loaded, datasets.DatasetDict):
        if split is not None:
            if split not in loaded:
                raise DataError(f"{spec}: no split {split!r} (splits: {', '.join(sorted(loaded))}); "
                                "set data.hf_split")
            parts = [loaded[split].to_pandas()]
        else:
            parts = [loaded[name].to_pandas() for name in sorted(loaded)]
        frame = pd.concat(parts, ignore_index=True)
    else:
        frame = loaded.to_pandas()
    if frame.empty:
        raise DataError(f"{spec}: the dataset has no rows")
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame
