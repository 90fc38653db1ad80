"""CompactLM: compact transformer presets and the library behind the CompactLM MLOps pipeline.

This package is a plain library: it never imports Prefect. The Prefect tasks in ``tasks/`` and
flows in ``flows/`` are thin wrappers over the typed functions defined here.
"""

__version__ = "0.1.0"
