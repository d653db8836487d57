"""Metrics of the loan job's test predictions: ROC AUC and accuracy, and for K classes macro one-vs-rest AUC
and accuracy of the most probable class."""

from __future__ import annotations

import numpy as np


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties); NaN without both classes."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1) == 1
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    start = 0
    while start < len(scores):
        end = start
        while end + 1 < len(scores) and sorted_scores[end + 1] == sorted_scores[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2.0 + 1.0
        start = end + 1
    return float((ranks[labels].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))


def accuracy(scores: np.ndarray, labels: np.ndarray, threshold: float = 0.5) -> float:
    return float(np.mean((np.asarray(scores).reshape(-1) >= threshold) == (np.asarray(labels).reshape(-1) == 1)))


def macro_auc(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Macro one-vs-rest ROC AUC of a K-class model: the mean over the classes k of ``roc_auc`` of column k
    (class k's probability) against [label == k], over the classes that have both positive and negative
    test rows (a class absent from the test rows has no AUC; NaN when none has one).  ``labels`` are class
    indices 0 .. K-1.  sklearn's roc_auc_score(multi_class="ovr", average="macro") refuses a missing class
    instead."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels).reshape(-1)
    areas = [roc_auc(probabilities[:, k], labels == k) for k in range(probabilities.shape[1])]
    defined = [area for area in areas if not np.isnan(area)]
    return float(np.mean(defined)) if defined else float("nan")


def class_accuracy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The share of rows whose most probable class (the first, on a tie) is their label (a class index)."""
    predicted = np.argmax(np.asarray(probabilities), axis=1)
    return float(np.mean(predicted == np.asarray(labels).reshape(-1)))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of logits (N x K), shifted by each row's maximum so exp cannot overflow."""
    shifted = np.asarray(logits, dtype=np.float64) - np.max(logits, axis=1, keepdims=True)
    exponentials = np.exp(shifted)
    return np.asarray(exponentials / exponentials.sum(axis=1, keepdims=True))
