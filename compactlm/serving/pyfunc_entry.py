"""MLflow models-from-code entry point for engine folders: MLflow executes this file when it loads one.

Logged as ``python_model`` (a file path, not a pickle), so loading never unpickles code.
"""

from mlflow.models import set_model

from compactlm.serving.mlflow_model import FastChatModel

set_model(FastChatModel())
