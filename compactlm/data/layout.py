"""The dataset folder layout of a state home, in one place.

::

    <home>/data/                              the DVC repository (initialised without git)
        datasets/<name>/{train,val,test,quarantine}.parquet   the checked-out version
        datasets/<name>.dvc                   DVC's record of that folder
        versions/<name>/<md5>.dvc             every version's .dvc file (any one can be restored)
        versions/<name>/index.json            the versions in recording order, with their statistics
        manifests/<name>.json                 incremental ingestion: the last run's files and fingerprint
        cache/raw/<hash>.parquet              incremental ingestion: parsed source files (used columns, PII scrubbed)
    <home>/data-docs/<name>/<md5[:12]>/       Great Expectations Data Docs of one version
    <home>/reports/<name>/<md5[:12]>/         the data quality report of one version

Every module that needs one of these paths asks ``DataLayout``; none joins the names itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REPO_FOLDER = "data"  # the DVC repository's folder in the state home
SHORT_MD5 = 12  # characters of a version's md5 naming its Data Docs and report folders (like a short git hash)
_DATASETS, _VERSIONS, _MANIFESTS, _CACHE = "datasets", "versions", "manifests", "cache"


def split_file_name(split: str) -> str:
    """The file name of one split (``train``, ``val``, ``test`` or ``quarantine``) in a dataset folder."""
    return f"{split}.parquet"


@dataclass(frozen=True)
class DataLayout:
    """The paths of the datasets under one DVC repository folder (``<home>/data`` in a state home).

    Attributes:
        repo: the DVC repository folder.
    """

    repo: Path

    @classmethod
    def for_home(cls, home: str | Path) -> DataLayout:
        """The layout of a state home (``<home>/data``); ``home`` is taken as given (not resolved)."""
        return cls(Path(home) / REPO_FOLDER)

    @classmethod
    def of_version(cls, version_path: str | Path) -> DataLayout:
        """The layout holding a checked-out dataset folder ``<repo>/datasets/<name>``."""
        return cls(Path(version_path).parents[1])

    @property
    def home(self) -> Path:
        """The state home the repository lives in (where Data Docs and reports go)."""
        return self.repo.parent

    def dataset_dir(self, name: str) -> Path:
        """The checked-out version of dataset ``name``: one Parquet file per split, plus the quarantine."""
        return self.repo / _DATASETS / name

    def split_file(self, name: str, split: str) -> Path:
        """One split file (``train``, ``val``, ``test`` or ``quarantine``) of the checked-out version."""
        return self.dataset_dir(name) / split_file_name(split)

    def dvc_file(self, name: str) -> Path:
        """DVC's ``.dvc`` file of the checked-out version (beside its folder)."""
        return self.repo / _DATASETS / f"{name}.dvc"

    def versions_dir(self, name: str) -> Path:
        """The folder keeping every version's ``.dvc`` file and the index of ``name``."""
        return self.repo / _VERSIONS / name

    def version_dvc_file(self, name: str, md5: str) -> Path:
        """The kept ``.dvc`` file of version ``md5`` (full hash) of ``name``."""
        return self.versions_dir(name) / f"{md5}.dvc"

    def index_file(self, name: str) -> Path:
        """The index listing the versions of ``name`` in recording order."""
        return self.versions_dir(name) / "index.json"

    def manifest_file(self, name: str) -> Path:
        """The incremental-ingestion manifest of ``name`` (the last run's files and fingerprint)."""
        return self.repo / _MANIFESTS / f"{name}.json"

    @property
    def raw_cache_dir(self) -> Path:
        """The cache of parsed source files (shared by every dataset, keyed by content)."""
        return self.repo / _CACHE / "raw"

    @property
    def dvc_ignored(self) -> tuple[str, ...]:
        """The ``.dvcignore`` patterns of the folders DVC must not see: the kept ``.dvc`` copies (DVC would
        see several files tracking one output), the manifests and the parsed-file cache."""
        return tuple(f"/{folder}/" for folder in (_VERSIONS, _MANIFESTS, _CACHE))

    def data_docs_dir(self, name: str, md5: str) -> Path:
        """The Great Expectations Data Docs folder of version ``md5`` of ``name``."""
        return self.home / "data-docs" / name / md5[:SHORT_MD5]

    def report_dir(self, name: str, md5: str) -> Path:
        """The data quality report folder of version ``md5`` of ``name``."""
        return self.home / "reports" / name / md5[:SHORT_MD5]
