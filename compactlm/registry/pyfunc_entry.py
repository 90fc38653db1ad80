"""MLflow models-from-code entry point: MLflow executes this file when it loads a CompactLM model.

Logged as ``python_model`` (a file path, not a pickle), so loading never unpickles code.
"""

from mlflow.models import set_model

from compactlm.registry.model import CompactLMChatModel

set_model(CompactLMChatModel())
