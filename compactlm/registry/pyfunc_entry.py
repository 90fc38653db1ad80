"""MLflow models-from-code entry point: MLflow executes this file when it loads a CompactLM model.

Logged as ``python_model`` (a file path, not a pickle), so loading never unpickles code. The logged model
config names the flavour (``compactlm_flavour``: ``transformers`` or ``engine``, see ``pyfunc``).
"""

from mlflow.models import ModelConfig, set_model

from compactlm.registry.pyfunc import FLAVOUR_KEY, python_model_for

set_model(python_model_for(ModelConfig().get(FLAVOUR_KEY)))
