"""`compactlm eval`: blind human evaluation sheets (export, import)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from compactlm.cli.common import ConfigOption, connect_tracking, load_state
from compactlm.registry import uris

app = typer.Typer(help="Human evaluation of champion vs challenger vs reference.", no_args_is_help=True)


@app.command("human-export")
def human_export(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for sheet.csv, sheet.html and key.json.")],
    n: Annotated[int, typer.Option("--n", help="Number of customer messages to rate.")] = 30,
    champion: Annotated[str, typer.Option(help="Champion version or alias.")] = "champion",
    challenger: Annotated[str, typer.Option(help="Challenger version or alias.")] = "challenger",
    seed: Annotated[int, typer.Option(help="Sampling and shuffling seed.")] = 0,
    config: ConfigOption = None,
) -> None:
    """Sample test messages, answer them with both models, and write a blind rating sheet.
    \f
    Raises:
        CompactLMError: ``--n`` below 1, or a model version or alias that cannot be loaded.
        DataError: no test split for ``data.dataset_name`` (was the dataset ingested?).
    """
    from compactlm.data.layout import DataLayout
    from compactlm.data.versioning import read_split
    from compactlm.errors import CompactLMError
    from compactlm.evaluation.generate import generate_responses
    from compactlm.evaluation.human import export_sheet
    from compactlm.registry.pyfunc import load_chat_model

    cfg, paths = connect_tracking(config)
    if n < 1:
        raise CompactLMError(f"--n must be >= 1, got {n}")
    test = read_split(DataLayout(paths.data_repo).dataset_dir(cfg.data.dataset_name), "test")
    sample = test.sample(n=min(n, len(test)), random_state=seed)
    prompts = list(sample["instruction"])
    answers = {"reference": list(sample["response"])}
    versions = {}
    for role, ref in (("champion", champion), ("challenger", challenger)):
        uri = uris.model_uri(cfg.registry.model_name, **({"version": ref} if ref.isdigit() else {"alias": ref}))
        try:
            model, tokenizer = load_chat_model(uri)
        except Exception as exc:  # MLflow raises several types for a missing version or alias
            raise CompactLMError(f"cannot load the {role} {uri}: {str(exc).splitlines()[0]}") from None
        answers[role] = generate_responses(model, tokenizer, prompts, cfg.eval.max_new_tokens)
        versions[f"{role}_uri"] = uri
    written = export_sheet(prompts, answers, out, seed, metadata=versions)
    typer.echo(f"Wrote {len(prompts)} items: {written['html']} (raters), {written['csv']}; "
               f"keep {written['key']} private.")


@app.command("human-import")
def human_import(
    ratings: Annotated[Path, typer.Option(help="The raters' CSV (item_id, best, human).")],
    key: Annotated[Path, typer.Option(help="key.json written by human-export.")],
    config: ConfigOption = None,
) -> None:
    """Compute win rates and the Turing-test figure, and log them to MLflow."""
    import json

    import mlflow

    from compactlm.evaluation.human import import_ratings
    from compactlm.registry.store import setup_tracking

    _, paths = load_state(config)
    result = import_ratings(ratings, key)
    experiment = setup_tracking(paths, "compactlm-human-eval")
    metadata = json.loads(Path(key).read_text())["metadata"]
    with mlflow.start_run(experiment_id=experiment, run_name="human-eval") as run:
        mlflow.set_tags(metadata)
        mlflow.log_metrics(result.metrics())
        mlflow.log_artifact(str(ratings), "human-eval")
        mlflow.log_dict(result.to_dict(), "human-eval/result.json")
    for name, value in result.metrics().items():
        typer.echo(f"{name}: {value:.3f}")
    typer.echo(f"Logged to MLflow run {run.info.run_id} (experiment compactlm-human-eval).")
