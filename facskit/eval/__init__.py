"""facskit.eval: the papers' evaluation protocols on a prepared cache.

* :func:`predict_cache`: batched inference of a checkpoint, one row of AU intensities (and labels) per frame;
* :func:`evaluate`: a run or checkpoint on its held-out subjects, ICC / MAE / PCC / F1 per AU and their mean;
* :func:`crossval`: train and evaluate every subject-exclusive fold, pooled and mean-over-folds metrics;
* :func:`robustness`: ICC against Gaussian landmark noise before re-alignment (BMVC'18);
* :func:`compare_markdown` / :func:`published_results`: runs and the papers' tables side by side.

Names are loaded on first use, so ``import facskit.eval`` does not import torch.
"""

from typing import TYPE_CHECKING

from facskit.lazy import lazy_exports

__all__ = [
    "CrossvalResult",
    "EvaluationResult",
    "RobustnessResult",
    "compare_markdown",
    "crossval",
    "evaluate",
    "list_published",
    "load_result",
    "metrics_from_predictions",
    "metrics_table_markdown",
    "predict_cache",
    "published_results",
    "resolve_checkpoint",
    "robustness",
]

if TYPE_CHECKING:  # pragma: no cover
    from facskit.eval.compare import compare_markdown, load_result
    from facskit.eval.crossval import CrossvalResult, crossval
    from facskit.eval.evaluate import (
        EvaluationResult,
        evaluate,
        metrics_from_predictions,
        metrics_table_markdown,
    )
    from facskit.eval.predict import predict_cache, resolve_checkpoint
    from facskit.eval.published import list_published, published_results
    from facskit.eval.robustness import RobustnessResult, robustness

_WHERE = {
    "CrossvalResult": "facskit.eval.crossval",
    "EvaluationResult": "facskit.eval.evaluate",
    "RobustnessResult": "facskit.eval.robustness",
    "compare_markdown": "facskit.eval.compare",
    "crossval": "facskit.eval.crossval",
    "evaluate": "facskit.eval.evaluate",
    "list_published": "facskit.eval.published",
    "load_result": "facskit.eval.compare",
    "metrics_from_predictions": "facskit.eval.evaluate",
    "metrics_table_markdown": "facskit.eval.evaluate",
    "predict_cache": "facskit.eval.predict",
    "published_results": "facskit.eval.published",
    "resolve_checkpoint": "facskit.eval.predict",
    "robustness": "facskit.eval.robustness",
}


__getattr__ = lazy_exports(__name__, _WHERE)
