"""Who wins, by how much, and where the gap is within noise: the tie rule and the summary.

The tie rule (used by every "better"/"winner" mark of the report): two numbers ``a ± s_a`` and
``b ± s_b`` differ only when ``|a - b| >= sqrt(s_a^2 + s_b^2)``, the combined uncertainty of the
± the tables show (the std over the sample draws; for the Parzen rows the standard error over
test images); closer than that they tie. Which way is better comes from
:data:`genduel.metrics.table.METRICS` (``higher_is_better``), never from a guess.

The ± covers the sample draws of one trained model only. Retraining, or the same commit on
another machine, moves the numbers more (:data:`RERUN_EXAMPLE`), so a win by a small multiple of
the ± is weak evidence; the opening paragraph says so.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, NamedTuple

from genduel.metrics.table import METRICS, SAMPLE, keys_of_kind
from genduel.report.document import fmt

VAE, GAN, TIE = "VAE", "GAN", "tie"

#: Sample metrics by what they judge, in the order the opening paragraph names them.
GROUPS: dict[str, tuple[str, ...]] = {
    "distance to the data": ("fid", "kid", "inception_fid", "inception_kid"),
    "sample quality and diversity": ("inception_score", "inception_is", "precision", "recall",
                                     "density", "coverage"),
    "class coverage": ("classes_covered", "classes_well_covered", "class_kl_to_uniform_nats",
                       "class_kl_to_real_nats", "label_accuracy"),
}
if sorted(k for keys in GROUPS.values() for k in keys) != sorted(keys_of_kind(SAMPLE)):
    raise ImportError(f"verdict.GROUPS {GROUPS} must hold each sample metric of "
                      f"genduel.metrics.table exactly once: {keys_of_kind(SAMPLE)}")

#: Measured reruns of the same code, params and seeds on two hosts of the same kind (the default
#: run at 0deda48/afdaafa and again at a9b4a2f, issue 11): far beyond the draws' ±0.4.
RERUN_EXAMPLE = ("GAN FID 189.8 on one host and 200.2 on another; "
                 "VAE FID 324.4 and 324.6")


def _number(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def spread(row: dict[str, Any], key: str) -> float:
    """The ± of ``row[key]``: ``<key>_std`` (sample draws) or ``<key>_sem``; 0 when absent."""
    for suffix in ("_std", "_sem"):
        value = _number(row.get(key + suffix))
        if value is not None:
            return abs(value)
    return 0.0


def decide(a: float, b: float, s_a: float, s_b: float, higher_is_better: bool) -> int:
    """+1 when ``a`` is better, -1 when ``b`` is, 0 for a tie (``|a - b| < sqrt(s_a² + s_b²)``,
    or equal values)."""
    if a == b or abs(a - b) < math.hypot(s_a, s_b):
        return 0
    return 1 if (a > b) == higher_is_better else -1


class Comparison(NamedTuple):
    """VAE against GAN on one metric."""

    key: str
    vae: float
    gan: float
    noise: float  # sqrt(s_vae² + s_gan²)
    winner: str  # VAE, GAN or TIE

    @property
    def gap(self) -> float:
        return abs(self.vae - self.gan)


#: The VAE row the verdict compares with the GAN: the VAE sampled from its fitted prior, the
#: sampler the pipeline gives it (``genduel sample models/vae_prior.pt``, the MLflow model of
#: fit_prior). The N(0, I) row draws from the prior's holes (see the report's "Why the prior
#: matters"); a run without a fitted-prior row falls back to it.
VERDICT_VAE_ROWS = ("vae_prior", "vae")


def vae_row(evals: dict[str, dict[str, Any]]) -> str:
    """The row of :data:`VERDICT_VAE_ROWS` the verdict uses: the first that ``evals`` has."""
    return next((r for r in VERDICT_VAE_ROWS if evals.get(r)), VERDICT_VAE_ROWS[-1])


def compare(evals: dict[str, dict[str, Any]], key: str) -> Comparison | None:
    """The VAE (:func:`vae_row`) and GAN rows on ``key`` by the tie rule; None when either
    lacks a number."""
    vae, gan = evals.get(vae_row(evals), {}), evals.get("gan", {})
    a, b = _number(vae.get(key)), _number(gan.get(key))
    if a is None or b is None:
        return None
    s_a, s_b = spread(vae, key), spread(gan, key)
    side = decide(a, b, s_a, s_b, METRICS[key].higher_is_better)
    return Comparison(key, a, b, math.hypot(s_a, s_b), {1: VAE, -1: GAN, 0: TIE}[side])


def sample_comparisons(evals: dict[str, dict[str, Any]]) -> list[Comparison]:
    """Every sample metric both models report, in table order."""
    return [c for k in keys_of_kind(SAMPLE) if (c := compare(evals, k)) is not None]


def _times(ratio: float) -> str:
    return f"{ratio:.0f}" if ratio >= 10 else f"{ratio:.1f}"


def describe(c: Comparison) -> str:
    """``FID 339.2 for the GAN vs 353.3 (gap 14.1 = 3.0 × the combined ± 4.7)``; the winner's
    value first (either model's for a tie)."""
    label = METRICS[c.key].label
    (first, a), (_, b) = ((GAN, c.gan), (VAE, c.vae)) if c.winner == GAN else ((VAE, c.vae),
                                                                            (GAN, c.gan))
    values = f"{label} {fmt(a)} for the {first} vs {fmt(b)}"
    if c.noise == 0:
        return f"{values} (no spread measured)"
    gap, noise = f"{c.gap:.3g}", f"{c.noise:.2g}"
    if c.winner == TIE:
        return f"{values} (gap {gap} < the combined ± {noise})"
    return f"{values} (gap {gap} = {_times(c.gap / c.noise)} × the combined ± {noise})"


def group_winner(comps: list[Comparison]) -> str:
    """VAE or GAN when it wins more of the group's metrics, TIE when neither wins any or both
    win as many."""
    wins = Counter(c.winner for c in comps)
    if wins[VAE] == wins[GAN]:
        return TIE
    return VAE if wins[VAE] > wins[GAN] else GAN


def group_sentence(name: str, comps: list[Comparison]) -> str:
    """One item on a group of metrics: its winner, the wins with their gaps, the ties."""
    winner, labels = group_winner(comps), ", ".join(METRICS[c.key].label for c in comps)
    wins = [describe(c) for c in comps if c.winner != TIE]
    ties = [METRICS[c.key].label for c in comps if c.winner == TIE]
    head = f"**{name[0].upper() + name[1:]}** ({labels})"
    if not wins:
        return f"{head}: a **tie**, every gap is within noise."
    lead = (f"the **{winner}** is better" if winner != TIE
            else "neither model is ahead (the wins split)")
    tail = f"; within noise: {', '.join(ties)}" if ties else ""
    return f"{head}: {lead}. " + "; ".join(wins) + tail + "."


def overall(comps: list[Comparison]) -> str:
    """The verdict in one sentence, from the count of wins over all sample metrics."""
    n, total = Counter(c.winner for c in comps), len(comps)
    ties = f"{n[TIE]} {'is a tie' if n[TIE] == 1 else 'are ties'} within noise"
    if n[VAE] == n[GAN] == 0:
        return (f"**In short: a tie.** None of the {total} sample metrics separates the models "
                "beyond the noise of the sample draws.")
    if n[VAE] == n[GAN]:
        return (f"**In short: neither model is ahead.** Each wins {n[VAE]} of the {total} "
                f"sample metrics; {ties}.")
    win, lose = (VAE, GAN) if n[VAE] > n[GAN] else (GAN, VAE)
    return (f"**In short: the {win} is ahead.** It wins {n[win]} of the {total} sample metrics, "
            f"the {lose} {n[lose]}, and {ties}.")


class Opening(NamedTuple):
    """The report's opening, in words: the verdict, one item per group of metrics, and what the
    ± does not cover."""

    verdict: str
    groups: list[str]
    caveat: str


def opening(evals: dict[str, dict[str, Any]], draws: Any) -> Opening:
    """Who wins on what and by how much, group by group (:data:`GROUPS`), and overall."""
    comps = {c.key: c for c in sample_comparisons(evals)}
    caveat = (f"A gap counts only when it exceeds the combined ± of the two numbers, and that ± "
              f"is the spread over the {draws} sample draws of one trained model: retraining or "
              f"another machine moves the numbers more (the same code and seeds gave "
              f"{RERUN_EXAMPLE}), so a win by a small multiple of the ± is weak evidence.")
    if not comps:
        return Opening("**In short: no verdict.** The eval files hold no sample metric both "
                       "models report.", [], caveat)
    groups = [group_sentence(name, [comps[k] for k in keys if k in comps])
              for name, keys in GROUPS.items() if any(k in comps for k in keys)]
    return Opening(overall(list(comps.values())), groups, caveat)
