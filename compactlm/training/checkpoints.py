"""Checkpoints of a training stage: which ones are complete, and where ``train.resume_from_checkpoint`` resumes.

The HF Trainer writes ``checkpoint-N`` folders; a process killed mid-save leaves an incomplete one, so
a checkpoint counts only once its ``trainer_state.json`` (written last) parses.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from compactlm.errors import ConfigError

logger = logging.getLogger(__name__)
CHECKPOINT_PREFIX = "checkpoint-"


def _is_complete_checkpoint(folder: Path) -> bool:
    """A checkpoint is complete once its trainer state (written last) parses."""
    try:
        json.loads((folder / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return True


def last_checkpoint(checkpoint_dir: str | Path) -> Path | None:
    """The highest-step complete ``checkpoint-N`` folder (a kill mid-save leaves an incomplete one)."""
    folder = Path(checkpoint_dir)
    if not folder.is_dir():
        return None
    candidates = [p for p in folder.glob(f"{CHECKPOINT_PREFIX}*") if p.name[len(CHECKPOINT_PREFIX):].isdigit()]
    for path in sorted(candidates, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):]), reverse=True):
        if _is_complete_checkpoint(path):
            return path
    return None


def resolve_resume(requested: str | None, checkpoint_dir: str | Path) -> str | None:
    """``last`` -> the latest complete checkpoint of this stage (None: start fresh); a folder must be one.

    Raises:
        ConfigError: a folder that is not a complete checkpoint.
    """
    if not requested:
        return None
    if requested == "last":
        found = last_checkpoint(checkpoint_dir)
        if found is None:
            logger.info("train.resume_from_checkpoint=last: no checkpoint in %s, starting fresh", checkpoint_dir)
        return str(found) if found else None
    if not _is_complete_checkpoint(Path(requested)):
        raise ConfigError(f"train.resume_from_checkpoint {requested!r} is not a complete checkpoint folder "
                          "(no readable trainer_state.json)")
    return str(requested)
