"""The loan job's commands: ``smpc train`` (a whole run on this machine), ``smpc party --data`` (one bank of a
run across hosts), ``smpc schema`` and ``smpc reveal-model``.  ``smpc.cli`` wires them into the parser."""

from __future__ import annotations

import argparse
import functools
import json
import time
from dataclasses import fields
from pathlib import Path

from smpc.loan.config import DEFAULT_HIDDEN, MODELS, TrainConfig
from smpc.loan.job import train_party
from smpc.loan.model_files import combine_shares
from smpc.loan.plain import train_plain
from smpc.loan.predict_commands import write_model
from smpc.loan.progress import print_progress
from smpc.loan.results import PartyResult, report
from smpc.loan.schema import DEFAULT_LABEL, DEFAULT_POSITIVE, embedded_dataset, load_table
from smpc.loan.schema_flags import parse_overrides, schema_from_flags, schema_with_overrides
from smpc.privacy import Ledger, dataset_id
from smpc.runner import run_local
from smpc.session import Session


class UsageError(Exception):
    """A mistake in the command line or its files; printed without a traceback, exit status 2."""


def add_train_arguments(parser: argparse.ArgumentParser, *, own_file: bool) -> None:
    parser.add_argument("--data", help="CSV file (default: the embedded German Credit data)" if not own_file
                        else "this party's own CSV rows; without it, `smpc party` runs the demo")
    parser.add_argument("--label", default="creditability", help="label column (default creditability)")
    parser.add_argument("--positive", help="label value counted as positive (default: 'bad' for the embedded "
                                           "data's label, else the larger of exactly two values; without it a "
                                           "label of more than two values trains a multi-class model)")
    parser.add_argument("--schema", help="public schema JSON (smpc schema); default: agreed by the "
                        "parties from all their rows at start-up (only scales and categories revealed)")
    parser.add_argument("--epochs", type=int, default=10, help="passes over the training rows")
    parser.add_argument("--lr", type=float, default=0.1, help="learning rate")
    parser.add_argument("--batch-size", type=int, default=32, help="rows per SGD step")
    parser.add_argument("--momentum", type=float, default=0.0, help="SGD momentum")
    parser.add_argument("--weight-decay", type=float, default=0.0, help="L2 weight decay")
    parser.add_argument("--hidden", type=int, default=0, help="hidden units of a one-hidden-layer MLP (Tanh); "
                                                               "0 = logistic regression (default)")
    parser.add_argument("--model", choices=MODELS, help="logreg (logistic, or softmax for a multi-class label), "
                        f"mlp (--hidden units, default {DEFAULT_HIDDEN}) or cnn (rows of H*W pixel columns, "
                        "square, one channel: Conv2d(1, 8, 3, padding=1), ReLU, MaxPool2d(2), Linear); default: "
                        "mlp with --hidden, else logreg")
    parser.add_argument("--frac-bits", type=int, default=16, help="fractional bits (default 16)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, batch order and initial weights")
    parser.add_argument("--test-fraction", type=float, default=0.3, help="share of the rows held out for testing")
    parser.add_argument("--max-rows", type=int, help="use only the first rows of the data (default: all)")
    parser.add_argument("--joint-init", action="store_true", help="draw the initial weights jointly (no one "
                                                                  "knows them) instead of from the model owner")
    parser.add_argument("--show-loss", action="store_true", help="reveal the loss of each batch to party 0")
    parser.add_argument("--audit", metavar="DIR", help="log every value each party learns to DIR")
    parser.add_argument("--out", metavar="DIR", help="write each party's model shares to DIR/party<rank>.npz")
    parser.add_argument("--reveal-to", type=int, help="reveal the trained weights to this party only")
    parser.add_argument("--checkpoint-every", type=int, default=0, metavar="K",
                        help="every K batches, each party writes its shares and counters to --checkpoint-dir "
                             "(atomically; committed once all parties have written)")
    parser.add_argument("--checkpoint-dir", metavar="DIR", help="where checkpoints go (default: the --resume DIR)")
    parser.add_argument("--resume", metavar="DIR", help="continue from the newest checkpoint every party committed "
                                                         "in DIR, with the same options (shares re-randomised)")
    parser.add_argument("--mode", choices=("secure", "fedavg"), default="secure",
                        help="secure: train on shares (default); fedavg: each bank trains locally in plain torch, "
                             "updates averaged under MPC")
    parser.add_argument("--rounds", type=int, default=10, help="fedavg rounds (default 10)")
    parser.add_argument("--local-steps", type=int, default=10, help="fedavg: SGD steps per bank per round (default 10)")
    parser.add_argument("--keep-shared", action="store_true", help="fedavg: keep the final model shared")
    parser.add_argument("--split-by", metavar="COLUMN",
                        help="deal the training rows to the banks by this column's value (skewed) instead of at random")
    parser.add_argument("--dp-epsilon", type=float, metavar="EPS",
                        help="differential privacy: the whole run spends at most this epsilon (secure: DP-SGD with "
                             "per-example clipping and joint noise; fedavg: clipped bank updates, noise on the sum)")
    parser.add_argument("--dp-delta", type=float, default=1e-5, help="DP delta (default 1e-5)")
    parser.add_argument("--dp-clip", type=float, default=1.0, help="DP clipping norm (default 1.0)")


def train_config(args: argparse.Namespace, *, own_file: bool) -> TrainConfig:
    positive = args.positive
    if positive is None and args.data is None and args.label == DEFAULT_LABEL:
        positive = DEFAULT_POSITIVE
    return TrainConfig(
        data=args.data, label=args.label, positive=positive, schema=args.schema, epochs=args.epochs, lr=args.lr,
        batch_size=args.batch_size, hidden=args.hidden, model=args.model, momentum=args.momentum,
        weight_decay=args.weight_decay,
        seed=args.seed, test_fraction=args.test_fraction, max_rows=args.max_rows, joint_init=args.joint_init,
        show_loss=args.show_loss, audit=args.audit, out=args.out, reveal_to=args.reveal_to,
        own_rows_only=own_file, checkpoint_every=args.checkpoint_every, checkpoint_dir=args.checkpoint_dir,
        resume=args.resume, mode=args.mode, rounds=args.rounds, local_steps=args.local_steps,
        keep_shared=args.keep_shared, split_by=args.split_by, dp_epsilon=args.dp_epsilon, dp_delta=args.dp_delta,
        dp_clip=args.dp_clip,
    )


def int_bits_for(frac_bits: int) -> int:
    """The widest magnitude bound the truncation allows with these fractional bits (at most 15)."""
    return min(15, 61 - 2 * frac_bits)


def run_party_job(session: Session, args: argparse.Namespace) -> PartyResult:
    """``smpc party --data FILE``: the loan job on this party's own rows; prints what this party learned."""
    result = train_party(session, train_config(args, own_file=True), print_progress)
    if result.auc is not None:
        area = f"macro one-vs-rest ROC AUC over {result.classes} classes" if result.classes else "ROC AUC"
        print(f"secure model on party 0's {result.test_rows} test rows: {area} {result.auc:.4f}, "
              f"accuracy {result.accuracy:.4f}")
    if result.weights is not None:
        print("revealed weights:", {name: value.tolist() for name, value in result.weights.items()})
    return result


def flag_names() -> dict[str, str]:
    """How the command line spells each TrainConfig field (``dp_epsilon`` -> ``--dp-epsilon``)."""
    return {field.name: "--" + field.name.replace("_", "-") for field in fields(TrainConfig)}


def cmd_train(args: argparse.Namespace) -> int:
    if args.parties < 2:
        raise UsageError("--parties must be at least 2")
    if args.truncation == "local" and args.parties != 2:
        raise UsageError("--truncation local is only correct for two parties (--parties 2)")
    config = train_config(args, own_file=False)
    if config.reveal_to is not None and not 0 <= config.reveal_to < args.parties:
        raise UsageError(f"--reveal-to must be a party rank in 0..{args.parties - 1}")
    ledger = dataset = None
    if args.ledger:
        if config.dp_epsilon is None:
            raise UsageError("with --ledger every run must be differentially private: add --dp-epsilon (a run "
                             "without it spends an unbounded budget)")
        ledger, dataset = Ledger(args.ledger), dataset_id(Path(config.data or embedded_dataset()))
        # Charged before the run (a reservation of its target): a run that fails midway may already have
        # released something, so it stays charged; one over the budget is refused here, before any data moves.
        ledger.charge(dataset, config.dp_epsilon, config.dp_delta,
                      f"smpc train --mode {config.mode} ({config.data or 'embedded German Credit'})",
                      tuple(args.budget))
    who = "and a dealer" if args.protocol == "dealer" else "(replicated protocol, no dealer)"
    print(f"smpc train: {args.parties} banks {who} as processes over CurveZMQ on 127.0.0.1; "
          f"data {config.data or 'German Credit (embedded)'}", flush=True)
    plain = train_plain(config, args.parties)
    print(f"  {plain.train_rows} training rows split among {args.parties} banks, {plain.test_rows} test rows "
          f"held by party 0; {describe_model(config, plain.classes)}, "
          f"{config.epochs} epochs, batch {config.batch_size}, lr {config.lr}"
          + (f"; fedavg: {config.rounds} rounds of {config.local_steps} local steps per bank, plain reference "
             f"trained centrally" if config.mode == "fedavg" else ""), flush=True)
    start = time.perf_counter()
    results = run_local(functools.partial(train_party, config=config, progress=print_progress),
                        protocol=args.protocol,
                        parties=args.parties, transport="zmq", frac_bits=args.frac_bits,
                        int_bits=int_bits_for(args.frac_bits), truncation=args.truncation,
                        failure_budget=args.failure_budget)
    seconds = time.perf_counter() - start
    owner = results[0]
    if ledger is not None and dataset is not None:
        spent = ledger.spent(dataset)
        print(f"  ledger {args.ledger}: this data set has spent epsilon {spent[0]:.3f}, delta {spent[1]:.2g} "
              f"of {args.budget[0]:g}, {args.budget[1]:g}")
    if owner.privacy is not None:
        print(f"  differential privacy: epsilon spent {owner.privacy.epsilon_spent:.3f} (target "
              f"{config.dp_epsilon:g}), delta {owner.privacy.delta:g}, noise multiplier "
              f"{owner.privacy.noise_multiplier:.3f}")
    print(f"  {'':10}{'macro AUC' if plain.classes else 'ROC AUC':>10}{'accuracy':>10}")
    print(f"  {config.mode:10}{owner.auc:10.4f}{owner.accuracy:10.4f}")
    print(f"  {'plain':10}{plain.auc:10.4f}{plain.accuracy:10.4f}")
    sent = [result.stats["bytes_sent"] for result in results]
    print(f"  {seconds:.1f} s; bytes sent per party: {sent}; rounds: {owner.stats['rounds']}")
    for result in results:
        if result.weights is not None:
            print(f"  weights revealed to party {result.rank} only:",
                  {name: [round(v, 4) for v in value.reshape(-1).tolist()] for name, value in result.weights.items()})
    if config.out:
        print(f"  each party's model shares are in {config.out}/party<rank>.npz; combine with smpc reveal-model")
    if args.report:
        Path(args.report).write_text(json.dumps(report(results, plain, seconds, config.mode), indent=2) + "\n")
    return 0


def describe_model(config: TrainConfig, classes: int) -> str:
    """The model in words: "logistic regression", "MLP with 8 hidden units, 10 classes", ..."""
    kind = config.architecture
    name = {"logreg": "softmax regression" if classes else "logistic regression",
            "mlp": f"MLP with {config.hidden_units} hidden units",
            "cnn": "CNN (Conv2d(1, 8, 3, padding=1), ReLU, MaxPool2d(2), Linear)"}[kind]
    return name + (f", {classes} classes (cross-entropy)" if classes else "")


def cmd_schema(args: argparse.Namespace) -> int:
    overrides = args.overrides or []
    if args.data or not overrides:
        table = load_table(args.data or embedded_dataset())
        positive = args.positive if args.positive is not None or args.data else "bad"
        declared = parse_overrides(overrides, args.label, table.header)
        schema = schema_with_overrides(table, declared, args.label, positive)
    else:
        schema = schema_from_flags(parse_overrides(overrides, args.label), args.label, args.positive)
    schema.save(args.out)
    print(f"wrote {args.out}: {len(schema.numeric)} numeric and {len(schema.categorical)} categorical columns, "
          f"{schema.n_features} features, label {schema.label!r} "
          + (f"classes {', '.join(schema.classes)}" if schema.classes else f"positive {schema.positive!r}"))
    return 0


def cmd_reveal_model(args: argparse.Namespace) -> int:
    meta, plain = combine_shares(args.files)
    print(f"model of {meta['parties']} parties, layout {meta['layout']}")
    for name, value in plain.items():
        print(f"  {name} {tuple(value.shape)}: {[round(v, 5) for v in value.reshape(-1).tolist()[:12]]}"
              f"{' ...' if value.numel() > 12 else ''}")
    if args.out:
        write_model(meta, plain, args.out)
        print(f"wrote {args.out}: the model on raw rows (TorchScript; smpc predict --model {args.out} --data "
              "FILE.csv runs it)")
    return 0
