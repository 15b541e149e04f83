"""Sample and likelihood metrics: small pure functions, features -> statistics -> metric.

``features``  FID (:func:`fid_statistics`, :func:`fid_from_statistics`, :func:`fid`), KID
              (:func:`kid`), k-NN precision/recall (:func:`precision_recall`), density and
              coverage (:func:`density_coverage`);
``classes``   Inception Score (:func:`inception_score`), class coverage (:func:`class_coverage`,
              :func:`class_kl_to_reference`);
``parzen``    Parzen-window log-likelihood (:func:`parzen_log_likelihood`,
              :func:`select_parzen_sigma`);
``sample``    one draw's metrics (:func:`compute_sample_metrics`) and the spread over draws
              (:func:`summarize_draws`, :func:`repeat_metric`);
``table``     the direction table :data:`METRICS` and :func:`metric_info`.
"""

from genduel.metrics.classes import (
    WELL_COVERED_RELATIVE_SHARE,
    class_counts,
    class_coverage,
    class_kl_to_reference,
    inception_score,
)
from genduel.metrics.features import (
    density_coverage,
    fid,
    fid_from_statistics,
    fid_statistics,
    kid,
    precision_recall,
)
from genduel.metrics.parzen import (
    parzen_log_densities,
    parzen_log_likelihood,
    select_parzen_sigma,
)
from genduel.metrics.sample import (
    DrawSummary,
    compute_sample_metrics,
    repeat_metric,
    summarize_draws,
)
from genduel.metrics.table import METRICS, MetricInfo, metric_info

__all__ = [
    "METRICS",
    "WELL_COVERED_RELATIVE_SHARE",
    "DrawSummary",
    "MetricInfo",
    "class_counts",
    "class_coverage",
    "class_kl_to_reference",
    "compute_sample_metrics",
    "density_coverage",
    "fid",
    "fid_from_statistics",
    "fid_statistics",
    "inception_score",
    "kid",
    "metric_info",
    "parzen_log_densities",
    "parzen_log_likelihood",
    "precision_recall",
    "repeat_metric",
    "select_parzen_sigma",
    "summarize_draws",
]
