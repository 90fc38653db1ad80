"""Drift of served traffic against the serving version's training data: the statistics (the report: ``report``).

Each check compares the served prompts of a window with the training prompts of the version that
served them, and drifts when its statistic passes its threshold in ``MonitorConfig``:

* ``length``: prompt length in words, two-sample Kolmogorov-Smirnov test (``scipy.stats.ks_2samp``;
  Hodges, "The significance probability of the Smirnov two-sample test", Arkiv för Matematik 3, 1958).
  Drifts when the statistic D exceeds ``length_ks_max`` and its p-value is below ``length_p_value``.
* ``vocabulary``: Jensen-Shannon distance, base 2 (0 = same, 1 = disjoint), between the word unigram
  distributions, words unseen in training pooled in one cell (``scipy.spatial.distance.jensenshannon``;
  Lin, "Divergence measures based on the Shannon entropy", IEEE Trans. Inf. Theory 37(1), 1991). The
  out-of-vocabulary rate is reported beside it.
* ``intent``: Jensen-Shannon distance between the intents a TF-IDF + logistic-regression classifier,
  fitted on half of the training prompts, predicts for the other half and for the served prompts:
  black-box shift detection (Lipton, Wang & Smola, "Detecting and Correcting for Label Shift with Black
  Box Predictors", ICML 2018; Rabanser, Günnemann & Lipton, "Failing Loudly", NeurIPS 2019).

The two distances are biased upwards on small samples: each drifts only above its threshold *and* above
the 99th percentile of the same distance between the reference and reference samples of the served size
(a bootstrap null; Efron & Tibshirani, "An Introduction to the Bootstrap", 1993).
* ``out_of_domain``: share of served prompts whose nearest training prompt has a TF-IDF cosine
  similarity below ``ood_similarity_min`` (nearest-neighbour novelty detection, scikit-learn
  ``NearestNeighbors``); drifts above ``ood_share_max``.
* ``negative_feedback``: share of thumbs-down among the answers rated in the window; drifts above
  ``negative_feedback_rate_max`` once at least ``min_feedback`` answers were rated.

Corrected answers are not drift but new training data: at ``corrected_answers_min`` of them since the
version was registered, the report calls for a retrain too.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np

from compactlm.config.monitor import CHECKS, MonitorConfig
from compactlm.monitoring.report import TEXT_CHECKS, CheckResult, DriftReport

WORD = re.compile(r"[a-z0-9']+")
LENGTH_BINS = (0, 2, 4, 6, 8, 10, 12, 15, 20, 25, 30, 40, 60, 100, 10**9)
METHODS = {
    "length": "two-sample Kolmogorov-Smirnov statistic D of word counts (scipy.stats.ks_2samp), with p below "
              "monitor.length_p_value",
    "vocabulary": "Jensen-Shannon distance, base 2, of word unigram distributions, unseen words pooled "
                  "(scipy.spatial.distance.jensenshannon), above the no-drift 99th percentile at this sample size "
                  "(bootstrap)",
    "intent": "Jensen-Shannon distance, base 2, of the intents a TF-IDF + logistic-regression classifier predicts "
              "for held-out training prompts vs served prompts (black-box shift detection), above the no-drift "
              "99th percentile at this sample size (bootstrap)",
    "out_of_domain": "share of served prompts whose nearest training prompt (TF-IDF, cosine) is below "
                     "monitor.ood_similarity_min (nearest-neighbour novelty detection)",
    "negative_feedback": "thumbs-down share of the answers rated in the window (each answer's latest rating)",
}
NULL_DRAWS = 100  # reference samples drawn for each no-drift percentile
NULL_QUANTILE = 0.99  # a drift must pass this quantile of the no-drift distances (1 % false alarms per check)


def words(text: str) -> list[str]:
    """Lower-cased word tokens (letters, digits, apostrophes) of ``text``."""
    return WORD.findall(text.lower())


def _distribution(counts: Counter, keys: Sequence[str]) -> np.ndarray:
    values = np.array([counts.get(k, 0) for k in keys], dtype=float)
    total = values.sum()
    return values / total if total else values


def length_check(reference: Sequence[str], served: Sequence[str], config: MonitorConfig) -> tuple[CheckResult, dict]:
    """Two-sample Kolmogorov-Smirnov test on prompt lengths in words (see the module)."""
    from scipy.stats import ks_2samp

    ref = np.array([len(words(t)) for t in reference], dtype=float)
    cur = np.array([len(words(t)) for t in served], dtype=float)
    result = ks_2samp(ref, cur)
    stat, p_value = float(result.statistic), float(result.pvalue)
    drifted = stat > config.length_ks_max and p_value < config.length_p_value
    detail = (f"median {np.median(cur):g} words served vs {np.median(ref):g} in training; p = {p_value:.2g}")
    hist = {"bins": list(LENGTH_BINS[:-1]), "reference": np.histogram(ref, LENGTH_BINS)[0].tolist(),
            "served": np.histogram(cur, LENGTH_BINS)[0].tolist()}
    return CheckResult("length", stat, config.length_ks_max, drifted, detail, METHODS["length"],
                       {"p_value": p_value, "median_served": float(np.median(cur)),
                        "median_reference": float(np.median(ref))}), hist


def _null_quantile(statistic, pool: Sequence, n: int, draws: int = NULL_DRAWS, seed: int = 0) -> float:
    """The ``NULL_QUANTILE`` (99th) percentile of ``statistic(sample)`` over ``draws`` size-``n`` samples of ``pool``.

    This is the statistic's spread under "no drift" at this sample size (a bootstrap null, Efron & Tibshirani,
    "An Introduction to the Bootstrap", 1993): plug-in distances of sparse distributions are biased upwards
    on small samples, so a fixed threshold alone would flag noise.
    """
    rng = np.random.default_rng(seed)
    replace = n > len(pool)  # a small pool: samples drawn with replacement
    values = [statistic([pool[i] for i in rng.choice(len(pool), size=n, replace=replace)]) for _ in range(draws)]
    return float(np.quantile(values, NULL_QUANTILE))


def _js(p: np.ndarray, q: np.ndarray) -> float:
    from scipy.spatial.distance import jensenshannon

    if not p.sum() or not q.sum():
        return 0.0
    value = float(jensenshannon(p, q, base=2))
    return 0.0 if math.isnan(value) else value


def vocabulary_check(reference: Sequence[str], served: Sequence[str], config: MonitorConfig) -> CheckResult:
    """Jensen-Shannon distance of the word distributions, and the out-of-vocabulary rate (see the module).

    The served words are compared with half of the training prompts; samples of the served size from the
    other half give the no-drift spread. Drifts when the distance passes ``vocabulary_js_max`` and the 99th
    percentile of that spread (``_null_quantile``).
    """
    ref_words = [words(t) for t in reference]
    ref = Counter(w for ws in ref_words for w in ws)
    # the served words are compared with one half; samples of the other half give the no-drift spread
    order = np.random.default_rng(0).permutation(len(ref_words))
    cut = (len(order) + 1) // 2
    half, pool = [ref_words[i] for i in order[:cut]], [ref_words[i] for i in order[cut:]]
    base = Counter(w for ws in half for w in ws)
    vocab = sorted(base)
    index = {w: i for i, w in enumerate(vocab)}
    ref_share = _distribution(base, vocab)

    def distance(sample_words: Sequence[list[str]]) -> float:
        counts = np.zeros(len(vocab) + 1)  # the last cell pools every unseen word
        for ws in sample_words:
            for w in ws:
                counts[index.get(w, len(vocab))] += 1
        return _js(np.append(ref_share, 0.0), counts / counts.sum() if counts.sum() else counts)

    cur_words = [words(t) for t in served]
    value = distance(cur_words)
    null = _null_quantile(distance, pool or half, len(cur_words))
    cur = Counter(w for ws in cur_words for w in ws)
    served_total = sum(cur.values())
    oov = sum(n for w, n in cur.items() if w not in ref) / served_total if served_total else 0.0
    new_words = [w for w, _ in cur.most_common() if w not in ref][:8]
    detail = f"{oov:.1%} of served words never seen in training" + (
        f" (most frequent: {', '.join(new_words)})" if new_words else "") + f"; no-drift p99 {null:.3f}"
    return CheckResult("vocabulary", value, config.vocabulary_js_max,
                       value > config.vocabulary_js_max and value > null, detail, METHODS["vocabulary"],
                       {"oov_rate": oov, "null_p99": null})


def _vectorizer(reference: Sequence[str]):
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(lowercase=True, ngram_range=(1, 2), min_df=1, sublinear_tf=True)
    return vectorizer, vectorizer.fit_transform(reference)


def intent_check(reference: Sequence[str], labels: Sequence[str] | None, served: Sequence[str],
                 config: MonitorConfig, seed: int = 0) -> tuple[CheckResult, dict]:
    """Black-box shift detection on predicted intents (see the module).

    A TF-IDF + logistic-regression classifier is fitted on half of the training prompts; the shares of its
    predictions on a quarter (the reference) are compared with the shares of its predictions on the
    served prompts (the last quarter gives the no-drift spread), so both carry the same classifier errors
    (Lipton et al. 2018). Drifts when the Jensen-Shannon distance passes ``intent_js_max`` and the no-drift
    99th percentile at this sample size.
    """
    from sklearn.linear_model import LogisticRegression

    method = METHODS["intent"]
    classes = sorted({str(label) for label in labels}) if labels is not None else []
    if len(classes) < 2 or len(reference) < 4:
        return CheckResult("intent", None, config.intent_js_max, False,
                           "not computed: the training data has no label/intent column with 2+ values", method), {}
    # half fits the classifier; a quarter gives the reference shares; the last quarter the no-drift spread
    order = np.random.default_rng(seed).permutation(len(reference))
    fit, held, pool = np.split(order, [len(order) // 2, (3 * len(order)) // 4])
    vectorizer, fit_matrix = _vectorizer([reference[i] for i in fit])
    classifier = LogisticRegression(max_iter=1000)
    fit_labels = [str(labels[i]) for i in fit]
    if len(set(fit_labels)) < 2:
        return CheckResult("intent", None, config.intent_js_max, False,
                           "not computed: too few labelled training prompts", method), {}
    classifier.fit(fit_matrix, fit_labels)
    held_predicted = list(classifier.predict(vectorizer.transform([reference[i] for i in held])))
    ref_share = _distribution(Counter(held_predicted), classes)
    cur_share = _distribution(Counter(classifier.predict(vectorizer.transform(served))), classes)
    value = _js(ref_share, cur_share)
    pool_predicted = list(classifier.predict(vectorizer.transform([reference[i] for i in pool])))
    null = _null_quantile(lambda sample: _js(ref_share, _distribution(Counter(sample), classes)), pool_predicted,
                          len(served))
    moved = sorted(zip(classes, cur_share - ref_share), key=lambda kv: -abs(kv[1]))[:3]
    detail = "largest shifts: " + ", ".join(f"{name} {delta:+.1%}" for name, delta in moved) + \
        f"; no-drift p99 {null:.3f}"
    return (CheckResult("intent", value, config.intent_js_max, value > config.intent_js_max and value > null, detail,
                        method, {"null_p99": null}),
            {"labels": classes, "reference": ref_share.tolist(), "served": cur_share.tolist()})


def out_of_domain_check(reference: Sequence[str], served: Sequence[str], config: MonitorConfig,
                        vectorized: tuple | None = None) -> CheckResult:
    """Share of served prompts far (TF-IDF cosine) from every training prompt (see the module)."""
    from sklearn.neighbors import NearestNeighbors

    vectorizer, ref_matrix = vectorized or _vectorizer(reference)
    index = NearestNeighbors(n_neighbors=1, metric="cosine").fit(ref_matrix)
    distances, _ = index.kneighbors(vectorizer.transform(served))
    similarity = 1.0 - distances[:, 0]
    share = float(np.mean(similarity < config.ood_similarity_min))
    return CheckResult("out_of_domain", share, config.ood_share_max, share > config.ood_share_max,
                       f"{share:.1%} of served prompts have no training prompt with cosine similarity >= "
                       f"{config.ood_similarity_min:g}",
                       METHODS["out_of_domain"], {"median_similarity": float(np.median(similarity))})


def feedback_check(up: int, down: int, config: MonitorConfig) -> CheckResult:
    """Thumbs-down share of the rated answers, once ``min_feedback`` were rated."""
    rated = up + down
    method = METHODS["negative_feedback"]
    if rated < config.min_feedback:
        return CheckResult("negative_feedback", None, config.negative_feedback_rate_max, False,
                           f"not enough feedback: {rated} rated answers (monitor.min_feedback = {config.min_feedback})",
                           method, {"rated": rated})
    rate = down / rated
    return CheckResult("negative_feedback", rate, config.negative_feedback_rate_max,
                       rate > config.negative_feedback_rate_max, f"{down} of {rated} rated answers were thumbs-down",
                       method, {"rated": rated})


def compare_traffic(reference_texts: Sequence[str], reference_labels: Sequence[str] | None,
                    served_texts: Sequence[str], *, n_served: int, feedback_up: int, feedback_down: int,
                    corrected_answers: int, config: MonitorConfig, model_name: str, model_version: str | None,
                    data_version: str | None, window: tuple[datetime, datetime]) -> DriftReport:
    """Run every check of one window of served traffic against the training data.

    Args:
        reference_texts: the training prompts (the task's prompt column), ``n`` strings.
        reference_labels: their labels/intents (``n`` values), or None for a task without labels.
        served_texts: the served prompts of the window with their text stored (empty when redacted).
        n_served: requests served in the window (with or without text).
        feedback_up, feedback_down: ratings stored in the window.
        corrected_answers: corrected answers stored since the version was registered.
        config: the thresholds; model_name, model_version, data_version: what the report is about.
        window: ``(start, end)`` in UTC.

    Returns:
        The ``DriftReport``. With fewer than ``config.min_requests`` served prompts (or none stored) the
        text checks are reported as not computed and do not drift.
    """
    served = [t for t in served_texts if t and t.strip()]
    checks: dict[str, CheckResult] = {}
    distributions: dict[str, Any] = {}
    text_checks = TEXT_CHECKS
    if len(served) < config.min_requests or not reference_texts:
        if not reference_texts:
            why = "not computed: no training prompts to compare with"
        elif n_served >= config.min_requests and not served:
            why = "not computed: the service stores no prompt text (set serve.redact_prompts: false to monitor it)"
        else:
            why = (f"not enough traffic: {len(served)} served prompts with text "
                   f"(monitor.min_requests = {config.min_requests})")
        thresholds = {"length": config.length_ks_max, "vocabulary": config.vocabulary_js_max,
                      "intent": config.intent_js_max, "out_of_domain": config.ood_share_max}
        for name in text_checks:
            checks[name] = CheckResult(name, None, thresholds[name], False, why, METHODS[name])
    else:
        checks["length"], distributions["length"] = length_check(reference_texts, served, config)
        checks["vocabulary"] = vocabulary_check(reference_texts, served, config)
        checks["intent"], intent_shares = intent_check(reference_texts, reference_labels, served, config)
        if intent_shares:
            distributions["intent"] = intent_shares
        checks["out_of_domain"] = out_of_domain_check(reference_texts, served, config)
    checks["negative_feedback"] = feedback_check(feedback_up, feedback_down, config)
    return DriftReport(model_name=model_name, model_version=model_version, data_version=data_version,
                       window_start=window[0], window_end=window[1], n_served=n_served, n_prompts=len(served),
                       n_reference=len(reference_texts), checks=[checks[name] for name in CHECKS],
                       feedback={"up": feedback_up, "down": feedback_down, "rated": feedback_up + feedback_down},
                       corrected_answers=corrected_answers, corrected_answers_min=config.corrected_answers_min,
                       retrain_on=list(config.retrain_on), distributions=distributions)
