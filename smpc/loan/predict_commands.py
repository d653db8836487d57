"""Using a trained model: ``smpc reveal-model --out model.pt`` (the model owner's plain model, TorchScript),
``smpc predict`` (that model on a CSV, in plain torch) and ``smpc party --predict`` (private inference: the
model stays shared, each bank alone receives its rows' predictions).  ``smpc.cli`` wires them in."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from smpc.hosts import load_roster
from smpc.loan.audit import AuditLog
from smpc.loan.metrics import roc_auc
from smpc.loan.multiclass import class_metrics
from smpc.loan.private_inference import InferenceResult, private_predict
from smpc.loan.rows import (
    class_labels,
    class_summary,
    feature_matrix,
    positive_labels,
    read_rows,
    schema_columns,
    summary,
    write_class_predictions,
    write_predictions,
)
from smpc.loan.schema import DataError, Schema
from smpc.loan.scripted import check_finite, load_scripted, raw_row_model, save_scripted
from smpc.loan.shared_model import ModelShares, check_session, read_model_shares
from smpc.session import Session


def add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="the model file smpc reveal-model --out wrote (TorchScript)")
    parser.add_argument("--data", required=True, help="CSV of rows to score (the model's columns, any order; a "
                                                      "label column is allowed: the AUC is then printed)")
    parser.add_argument("--out", help="write the predictions here as CSV (row,line,probability; a multi-class "
                                      "model: row,line,class,probability_<class>...); without it, print a "
                                      "summary and the first rows")


def add_party_arguments(parser: argparse.ArgumentParser) -> None:
    """``smpc party``'s options beyond training: ``--predict``, ``--model-shares`` and ``--report``."""
    parser.add_argument("--predict", action="store_true",
                        help="private inference instead of training: score the --data rows of every party that "
                             "passes --data with the shared model of --model-shares; each such party alone "
                             "receives its rows' predictions (to --out FILE, or a summary); the others help")
    parser.add_argument("--model-shares", metavar="DIR",
                        help="with --predict: the folder holding this party's party<rank>.npz (a training run's --out)")
    parser.add_argument("--report", metavar="FILE", help="write what this party knows at the end as JSON (party 0 "
                                                         "of a training run: the test AUC and accuracy)")


def write_model(meta: dict[str, Any], values: dict[str, torch.Tensor], out: str | Path) -> Path:
    """``smpc reveal-model --out``: the combined model as TorchScript on raw rows (``scripted``)."""
    return save_scripted(raw_row_model(meta, values), meta, out)


def cmd_predict(args: argparse.Namespace) -> int:
    """``smpc predict``: the revealed model on a CSV's rows, in plain torch (values beyond the schema's scales
    or unknown categories are refused naming file, line and column, unless the model was trained on clipped
    rows)."""
    module, schema, meta = load_scripted(args.model)
    rows, lines = read_rows(args.data, schema)
    # Checked (and encoded) here first, so a bad value is named by its file line, not by the module.
    feature_matrix(schema, rows, lines, args.data, clip=bool(meta.get("clip")))
    with torch.no_grad():
        probabilities = module([[row[column] for column in schema_columns(schema)] for row in rows])
    check_finite(probabilities)
    values = probabilities.numpy()
    if schema.classes:
        _print_classes(args.data, values, lines, class_labels(schema, rows, lines, args.data), args.out, schema)
    else:
        _print_outcome("smpc predict", args.data, values, lines, positive_labels(schema, rows), args.out)
    return 0


def _print_classes(source: str, probabilities: np.ndarray, lines: list[int], labels: np.ndarray | None,
                   out: str | None, schema: Schema) -> None:
    """``smpc predict`` of a multi-class model: accuracy and macro one-vs-rest AUC against the label column
    when the rows have one, then the predictions (``--out`` CSV, or a summary)."""
    if labels is not None:
        auc, correct = class_metrics(probabilities, labels)
        print(f"smpc predict: accuracy {correct:.4f}, macro one-vs-rest ROC AUC {auc:.4f} against the label "
              f"column of {source}")
    if out:
        write_class_predictions(out, probabilities, lines, schema.classes)
        print(f"smpc predict: wrote {len(probabilities)} predictions (class and per-class probabilities) to {out}")
    else:
        print("\n".join(class_summary(probabilities, lines, schema.classes)))


def cmd_party_predict(args: argparse.Namespace) -> int:
    """``smpc party --predict``: load this party's shares and rows (both checked before connecting), join the
    session, run ``private_predict``, and write what this party received."""
    if not args.model_shares:
        raise DataError("--predict needs --model-shares DIR (the folder with this party's party<rank>.npz)")
    if args.out and not args.data:
        raise DataError("--out with --predict is the file for this party's predictions: only a party that brings "
                        "rows (--data) gets any")
    shares = read_model_shares(args.model_shares, args.rank)
    if shares.schema.classes:
        raise DataError(f"{shares.path}: a multi-class model; private inference scores binary models only (the "
                        "model owner can run smpc reveal-model --out and smpc predict)")
    roster = load_roster(args.roster)
    check_session(shares, roster.n_parties, "dealer" if roster.dealer is not None else "replicated",
                  roster.frac_bits)
    features: np.ndarray | None = None
    labels: np.ndarray | None = None
    lines: list[int] = []
    if args.data:
        rows, lines = read_rows(args.data, shares.schema)
        features = feature_matrix(shares.schema, rows, lines, args.data, clip=shares.clip)
        labels = positive_labels(shares.schema, rows)
    print(f"smpc party {args.rank}: connecting ({'scoring ' + str(len(lines)) + ' rows' if args.data else 'helping'})",
          flush=True)
    with Session.connect(args.rank, roster, args.key, recv_timeout=args.recv_timeout,
                         connect_timeout=args.connect_timeout) as session:
        result = _predict_audited(session, shares, features, args.audit)
    owners = [rank for rank, count in enumerate(result.rows) if count]
    print(f"smpc party --predict: {sum(result.rows)} rows of {len(owners)} owner(s) (parties "
          f"{', '.join(map(str, owners))}), {result.stats['rounds']} rounds, {result.seconds:.2f} s, "
          f"{result.stats['bytes_sent']} bytes sent by party {args.rank}")
    if result.predictions is not None:
        _print_outcome(f"smpc party {args.rank}", args.data, result.predictions, lines, labels, args.out)
    if args.report:
        Path(args.report).write_text(json.dumps(inference_report(result), indent=2) + "\n")
    return 0


def _predict_audited(session: Session, shares: ModelShares, features: np.ndarray | None,
                     audit_dir: str | None) -> InferenceResult:
    audit = AuditLog(Path(audit_dir) / f"audit-party{session.rank}.jsonl") if audit_dir else None
    if audit is not None:
        session.party.observers.append(audit)
    try:
        return private_predict(session, shares, features)
    finally:
        if audit is not None:
            session.party.observers.remove(audit)
            audit.close()


def inference_report(result: InferenceResult) -> dict[str, Any]:
    """``smpc party --predict --report``: ``mode`` "predict", ``rank``, ``rows`` (every party's row count, in
    rank order: public), ``seconds``, and this party's ``bytes_sent``, ``bytes_received``, ``messages`` and
    ``rounds``.  No prediction: those go to ``--out`` on the row owner only."""
    return {"mode": "predict", "rank": result.rank, "rows": result.rows, "seconds": result.seconds,
            **{key: result.stats.get(key, 0) for key in ("bytes_sent", "bytes_received", "messages", "rounds")}}


def _print_outcome(who: str, source: str, probabilities: np.ndarray, lines: list[int], labels: np.ndarray | None,
                   out: str | None) -> None:
    if labels is not None and 0 < labels.sum() < len(labels):
        print(f"{who}: ROC AUC {roc_auc(probabilities, labels):.4f} against the label column of {source}")
    if out:
        write_predictions(out, probabilities, lines)
        print(f"{who}: wrote {len(probabilities)} predictions to {out}")
    else:
        print("\n".join(summary(probabilities, lines)))
