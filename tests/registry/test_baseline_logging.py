"""Tracking helpers against a real SQLite MLflow store: the run's baseline is logged as a model that loads back."""

from __future__ import annotations

import pandas as pd
import pytest

from compactlm.evaluation.baselines import fit_and_score
from compactlm.registry import store
from compactlm.registry.tracking import log_baseline
from compactlm.state import state_paths

TRAIN = pd.DataFrame({"instruction": ["where is my parcel", "i want a refund", "change my password", "cancel my order"],
                      "response": ["It ships today.", "Refunds take five days.", "Use the reset link.", "Done."],
                      "text": ["where is my parcel", "i want a refund", "change my password", "cancel my order"],
                      "label": ["delivery", "refund", "account", "order"]})


@pytest.mark.parametrize(("name", "question", "answer"), [
    ("tfidf-retrieval", "where is my parcel please", "It ships today."),
    ("tfidf-linear-svm", "i want a refund", "refund"),
])
def test_each_baseline_is_logged_as_a_model_that_loads_and_answers(home, name, question, answer):
    import mlflow

    experiment = store.setup_tracking(state_paths(), "unit")
    baseline, result = fit_and_score(name, TRAIN, TRAIN, sample=(4, 0))
    with mlflow.start_run(experiment_id=experiment) as run:
        pass
    try:
        uri = log_baseline(baseline, result, run.info.run_id)
        model = mlflow.pyfunc.load_model(uri)
        assert list(model.predict([question])) == [answer]
        assert list(model.predict(pd.DataFrame({"text": [question]}))) == [answer]
        assert mlflow.get_run(run.info.run_id).data.tags["baseline"] == name
    finally:
        mlflow.set_tracking_uri(None)
