"""What a reviewer sees before deciding: gate verdict, smoke test, key metrics against the champion, and links
to the version's MLflow page and the Prefect run that registered it (the review form and its artifact)."""

from __future__ import annotations

from mlflow import MlflowClient

from compactlm.registry.review import _tags, promotable
from compactlm.registry.store import CHAMPION, alias_version

KEY_METRICS = ("rouge_l", "bleu", "mcq_accuracy", "perplexity", "word_perplexity", "accuracy", "macro_f1")


def _links(model_name: str, version: str, tags: dict[str, str]) -> list[str]:
    """Markdown links to the version's MLflow page and the Prefect run that registered it (where a server is)."""
    import mlflow

    lines = []
    tracking = mlflow.get_tracking_uri()
    if tracking.startswith(("http://", "https://")):
        lines.append(f"- MLflow version page: {tracking.rstrip('/')}/#/models/{model_name}/versions/{version}")
        if tags.get("mlflow_run_id"):
            try:
                experiment = MlflowClient().get_run(tags["mlflow_run_id"]).info.experiment_id
                lines.append(f"- MLflow run (gate report and model card under `reports/`): {tracking.rstrip('/')}"
                             f"/#/experiments/{experiment}/runs/{tags['mlflow_run_id']}")
            except Exception:  # a deleted run: the version page still links what is left
                pass
    else:
        lines.append(f"- MLflow: `mlflow ui --backend-store-uri {tracking}`, then Models → `{model_name}` → "
                     f"version {version}")
    flow_run = tags.get("prefect_flow_run_id")
    if flow_run:
        link = flow_run_link(flow_run)
        lines.append(f"- Retrain flow run: {link}" if link.startswith("http") else f"- Retrain flow run: `{flow_run}`")
    return lines


def flow_run_link(flow_run_id: str) -> str:
    """The Prefect UI page of a flow run (``PREFECT_UI_URL``, else ``PREFECT_API_URL`` without ``/api``).

    Returns:
        ``<ui>/runs/flow-run/<id>`` when a server is configured, else ``flow run <id>`` (the ephemeral API has
        no UI).
    """
    from os import environ

    ui = environ.get("PREFECT_UI_URL") or environ.get("PREFECT_API_URL", "").removesuffix("/api")
    return f"{ui.rstrip('/')}/runs/flow-run/{flow_run_id}" if ui.startswith("http") else f"flow run {flow_run_id}"


def review_context(model_name: str, version: str) -> str:
    """What a reviewer needs to decide, as markdown: gate verdict, smoke test, key metrics vs champion, links.

    Read from the version's registry tags (``gate_verdict``, ``smoke_test``, ``metric.*``, run ids) and the
    current champion's; the MLflow and Prefect links are absolute when the tracking URI and
    ``PREFECT_UI_URL``/``PREFECT_API_URL`` are servers.

    Args:
        model_name: the registered model.
        version: the version under review.
    """
    tags = _tags(model_name, version)
    champion = alias_version(model_name, CHAMPION)
    champion_tags = _tags(model_name, champion) if champion and champion != version else {}
    ok, why = promotable(tags)
    lines = [f"**Gate:** {tags.get('gate_verdict', 'missing')} · **smoke test:** {tags.get('smoke_test', 'missing')}"
             + ("" if ok else f" — this version cannot become champion: {why}"), ""]
    metrics = [m for m in KEY_METRICS if f"metric.{m}" in tags]
    if metrics:
        # The gate re-scored the champion on this version's test split (gate.champion.*): those are the figures
        # it decided on. The champion's own stored metrics come from its run's data and are shown only without them.
        rescored = any(k.startswith("gate.champion.") for k in tags)
        head = f"champion (v{champion})" if champion_tags else "champion"
        if rescored:
            head += ", re-scored by the gate on this test split"
        lines += [f"| metric | this version | {head} |", "|---|---|---|"]
        lines += [f"| {m} | {tags[f'metric.{m}']} | "
                  f"{tags.get(f'gate.champion.{m}', '—') if rescored else champion_tags.get(f'metric.{m}', '—')} |"
                  for m in metrics]
        lines.append("")
    if not champion_tags:
        lines += ["No other champion: approving makes this version the first.", ""]
    lines += _links(model_name, version, tags)
    return "\n".join(lines)
