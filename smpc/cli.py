"""The ``smpc`` command: demo, keygen, roster, dealer, party.

Every failure a user can cause (a bad file, a refused key, a lost peer) ends with one line saying what went
wrong and exit status 1 or 2, never a traceback from deep inside.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from network import NetworkError
from network import Roster, read_public_key, write_keypair
from protocols import TruncationBudgetError
from smpc.dataset import DataError, Schema, embedded_dataset, load_csv
from smpc.demo import demo_program, plain_reference
from smpc.hosts import connect_node, load_roster, roster_options
from smpc.runner import PartyError, run_dealer, run_local
from smpc.session import Session
from smpc.privacy import Ledger, dataset_id
from smpc.train import TrainConfig, combine_shares, print_progress, train_party, train_plain


class UsageError(Exception):
    """A mistake in the command line or its files; printed without a traceback, exit status 2."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except (UsageError, ValueError, DataError, FileNotFoundError, PermissionError, IsADirectoryError) as error:
        print(f"smpc {args.command}: error: {error}", file=sys.stderr)
        return 2
    except (NetworkError, PartyError, TruncationBudgetError, TimeoutError) as error:
        print(f"smpc {args.command}: failed: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"smpc {args.command}: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smpc", description="Secure multi-party computation over Z_2^64.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = commands.add_parser("demo", help="run the three-bank demo on this machine (parties as processes)")
    demo.add_argument("--parties", type=int, default=3, help="number of computing parties (default 3)")
    demo.add_argument("--transport", choices=("zmq", "inproc"), default="zmq",
                      help="zmq: processes over CurveZMQ on 127.0.0.1 (default); inproc: threads")
    demo.set_defaults(handler=_cmd_demo)

    keygen = commands.add_parser("keygen", help="write a CurveZMQ keypair: PREFIX.key (secret) and PREFIX.pub")
    keygen.add_argument("prefix", help="path prefix of the two files")
    keygen.add_argument("--force", action="store_true", help="overwrite existing files")
    keygen.set_defaults(handler=_cmd_keygen)

    roster = commands.add_parser("roster", help="write a roster file from the parties' addresses and public keys")
    roster.add_argument("--out", required=True, help="roster file to write (JSON)")
    roster.add_argument("--session", required=True, help="session name; every node must use the same roster")
    roster.add_argument("--party", nargs=2, action="append", metavar=("ADDRESS", "PUBFILE"), required=True,
                        help="tcp://HOST:PORT and public key file of the next party (repeat, rank order)")
    roster.add_argument("--dealer", nargs=2, metavar=("ADDRESS", "PUBFILE"), required=True,
                        help="tcp://HOST:PORT and public key file of the dealer")
    roster.add_argument("--frac-bits", type=int, default=16, help="fractional bits of the encoding (default 16)")
    roster.set_defaults(handler=_cmd_roster)

    dealer = commands.add_parser("dealer", help="run the dealer of a session described by a roster")
    _node_arguments(dealer)
    dealer.set_defaults(handler=_cmd_dealer)

    train = commands.add_parser("train", help="train the loan model with three banks and a dealer on this machine")
    train.add_argument("--parties", type=int, default=3, help="number of banks / computing parties (default 3)")
    _train_arguments(train, own_file=False)
    train.add_argument("--report", help="write the results as JSON to this file")
    train.add_argument("--truncation", choices=("dealer", "local"), default="dealer",
                       help="dealer: exact (default); local: two parties only, no communication, each truncation "
                            "wrong with a small probability, refused when a run's expected failures exceed "
                            "--failure-budget")
    train.add_argument("--failure-budget", type=float, default=1e-6,
                       help="most expected wrong truncations a run may have with --truncation local (default 1e-6)")
    train.add_argument("--ledger", metavar="FILE",
                       help="privacy-budget ledger: record what this run spends on its data set, and refuse it "
                            "if that would exceed --budget (runs without --dp-epsilon are refused)")
    train.add_argument("--budget", type=float, nargs=2, default=(10.0, 1e-4), metavar=("EPS", "DELTA"),
                       help="the data set's total privacy budget in the ledger (default 10 1e-4)")
    train.set_defaults(handler=_cmd_train)

    party = commands.add_parser("party", help="run one party of a session described by a roster: the demo, or "
                                              "with --data the loan job on this party's own rows")
    party.add_argument("--rank", type=int, required=True, help="this party's rank in the roster")
    _node_arguments(party)
    _train_arguments(party, own_file=True)
    party.set_defaults(handler=_cmd_party)

    schema = commands.add_parser("schema", help="write the public schema of a CSV (share it with every bank)")
    schema.add_argument("--data", help="CSV file (default: the embedded German Credit data)")
    schema.add_argument("--label", default="creditability")
    schema.add_argument("--positive", help="label value counted as positive")
    schema.add_argument("--out", required=True, help="schema JSON file to write")
    schema.set_defaults(handler=_cmd_schema)

    bench = commands.add_parser("bench", help="the benchmark suite: time, bytes and rounds per op for 2 and 3 "
                                              "parties over CurveZMQ, against plain torch; JSON and PNG under --out")
    _bench_arguments(bench)
    bench.set_defaults(handler=_cmd_bench)

    reveal = commands.add_parser("reveal-model", help="combine every party's model shares (the model owner's step)")
    reveal.add_argument("files", nargs="+", help="the parties' party<rank>.npz files, one per party")
    reveal.add_argument("--out", help="write the plain weights to this .pt file (torch.save of a dict)")
    reveal.set_defaults(handler=_cmd_reveal_model)
    return parser


def _train_arguments(parser: argparse.ArgumentParser, *, own_file: bool) -> None:
    parser.add_argument("--data", help="CSV file (default: the embedded German Credit data)" if not own_file
                        else "this party's own CSV rows; without it, `smpc party` runs the demo")
    parser.add_argument("--label", default="creditability", help="label column (default creditability)")
    parser.add_argument("--positive", help="label value counted as positive (default: 'bad' for the embedded "
                                           "data, else needed unless the label has exactly two values)")
    parser.add_argument("--schema", help="public schema JSON (smpc schema); default: inferred from the data")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--momentum", type=float, default=0.0)
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--hidden", type=int, default=0, help="hidden units of a one-hidden-layer MLP (Tanh); "
                                                               "0 = logistic regression (default)")
    parser.add_argument("--frac-bits", type=int, default=16, help="fractional bits (default 16)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test-fraction", type=float, default=0.3)
    parser.add_argument("--max-rows", type=int, help="use only the first rows of the data")
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


def _train_config(args: argparse.Namespace, *, own_file: bool) -> TrainConfig:
    positive = args.positive
    if positive is None and args.data is None:
        positive = "bad"
    return TrainConfig(
        data=args.data, label=args.label, positive=positive, schema=args.schema, epochs=args.epochs, lr=args.lr,
        batch_size=args.batch_size, hidden=args.hidden, momentum=args.momentum, weight_decay=args.weight_decay,
        seed=args.seed, test_fraction=args.test_fraction, max_rows=args.max_rows, joint_init=args.joint_init,
        show_loss=args.show_loss, audit=args.audit, out=args.out, reveal_to=args.reveal_to,
        own_rows_only=own_file, checkpoint_every=args.checkpoint_every, checkpoint_dir=args.checkpoint_dir,
        resume=args.resume, mode=args.mode, rounds=args.rounds, local_steps=args.local_steps,
        keep_shared=args.keep_shared, split_by=args.split_by, dp_epsilon=args.dp_epsilon, dp_delta=args.dp_delta,
        dp_clip=args.dp_clip,
    )


def _int_bits(frac_bits: int) -> int:
    """The widest magnitude bound the truncation allows with these fractional bits (at most 15)."""
    return min(15, 61 - 2 * frac_bits)


def _node_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--roster", required=True, help="roster file (smpc roster)")
    parser.add_argument("--key", required=True, help="this node's secret key file (smpc keygen)")
    parser.add_argument("--recv-timeout", type=float, default=120.0, help="seconds to wait for any message")
    parser.add_argument("--connect-timeout", type=float, default=300.0,
                        help="seconds to wait for every node of the roster to come up")


def _cmd_demo(args: argparse.Namespace) -> int:
    if args.parties < 2:
        raise UsageError("--parties must be at least 2")
    print(f"smpc demo: {args.parties} banks and a dealer, "
          f"{'each its own process over CurveZMQ on 127.0.0.1' if args.transport == 'zmq' else 'threads in this process'}")
    start = time.perf_counter()
    results = run_local(demo_program, parties=args.parties, transport=args.transport)
    elapsed = time.perf_counter() - start
    _print_demo(results[0], args.parties)
    for rank, result in enumerate(results):
        stats = result["stats"]
        print(f"  party {rank}: sent {stats['bytes_sent']} bytes in {stats['messages']} messages, "
              f"{stats['rounds']} rounds")
    print(f"done in {elapsed:.2f} s")
    return 0


def _print_demo(result: dict[str, Any], n_parties: int) -> None:
    plain = plain_reference(n_parties)
    print(f"  {'':18}{'secure':>12}{'plain':>12}")
    for name in ("total_lent", "interest_income", "mean_rate"):
        print(f"  {name:18}{result[name]:12.5f}{plain[name]:12.5f}")
    print("  exposure matrix (revealed):", [[round(v, 4) for v in row] for row in result["exposure"]])
    print("  (fixed point with 2^-16 resolution: rates near 0.05 carry about 1e-4 relative encoding error)")


def _cmd_keygen(args: argparse.Namespace) -> int:
    prefix = Path(args.prefix)
    for suffix in (".key", ".pub"):
        target = prefix.with_name(prefix.name + suffix)
        if target.exists() and not args.force:
            raise UsageError(f"{target} exists; pass --force to overwrite")
    write_keypair(prefix, overwrite=args.force)
    secret_path, public_path = (prefix.with_name(prefix.name + suffix) for suffix in (".key", ".pub"))
    print(f"wrote {secret_path} (secret: keep it on this host) and {public_path} (public: put it in the roster)")
    return 0


def _cmd_roster(args: argparse.Namespace) -> int:
    def node(address: str, pubfile: str) -> dict[str, str]:
        return {"address": address, "public_key": read_public_key(pubfile).decode("ascii")}

    document = {
        "session": args.session,
        "frac_bits": args.frac_bits,
        "parties": [node(address, pub) for address, pub in args.party],
        "dealer": node(*args.dealer),
    }
    out = Path(args.out)
    out.write_text(json.dumps(document, indent=2) + "\n")
    try:
        Roster.load(out)
    except ValueError:
        out.unlink()
        raise
    print(f"wrote {out}: {len(args.party)} parties and a dealer")
    return 0


def _cmd_dealer(args: argparse.Namespace) -> int:
    roster = load_roster(args.roster)
    options = roster_options(roster, recv_timeout=args.recv_timeout, connect_timeout=args.connect_timeout)
    print(f"smpc dealer: waiting for {roster.n_parties} parties of session {roster.session!r}", flush=True)
    transport = connect_node(roster.dealer_id, roster, args.key, options)
    served = run_dealer(transport, roster.n_parties)
    print(f"smpc dealer: served {served} requests; session over")
    return 0


def _cmd_party(args: argparse.Namespace) -> int:
    print(f"smpc party {args.rank}: connecting", flush=True)
    with Session.connect(args.rank, args.roster, args.key, recv_timeout=args.recv_timeout,
                         connect_timeout=args.connect_timeout) as session:
        if args.data is None:
            result = demo_program(session)
        else:
            result = train_party(session, _train_config(args, own_file=True), print_progress)
    if args.data is None:
        _print_demo(result, session.world_size)
    else:
        if "auc" in result:
            print(f"secure model on party 0's {result['test_rows']} test rows: ROC AUC {result['auc']:.4f}, "
                  f"accuracy {result['accuracy']:.4f}")
        if "weights" in result:
            print("revealed weights:", {name: value.tolist() for name, value in result["weights"].items()})
    stats = result["stats"]
    print(f"smpc party {args.rank}: sent {stats['bytes_sent']} bytes, {stats['rounds']} rounds")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    if args.parties < 2:
        raise UsageError("--parties must be at least 2")
    if args.truncation == "local" and args.parties != 2:
        raise UsageError("--truncation local is only correct for two parties (--parties 2)")
    config = _train_config(args, own_file=False)
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
                      f"smpc train --mode {config.mode} ({config.data or 'embedded German Credit'})", tuple(args.budget))
    print(f"smpc train: {args.parties} banks and a dealer as processes over CurveZMQ on 127.0.0.1; "
          f"data {config.data or 'German Credit (embedded)'}", flush=True)
    plain = train_plain(config, args.parties)
    print(f"  {plain['train_rows']} training rows split among {args.parties} banks, {plain['test_rows']} test rows "
          f"held by party 0; {'MLP with ' + str(config.hidden) + ' hidden units' if config.hidden else 'logistic regression'}, "
          f"{config.epochs} epochs, batch {config.batch_size}, lr {config.lr}"
          + (f"; fedavg: {config.rounds} rounds of {config.local_steps} local steps per bank, plain reference "
             f"trained centrally" if config.mode == "fedavg" else ""), flush=True)
    start = time.perf_counter()
    results = run_local(functools.partial(train_party, config=config, progress=print_progress),
                        parties=args.parties, transport="zmq", frac_bits=args.frac_bits,
                        int_bits=_int_bits(args.frac_bits), truncation=args.truncation,
                        failure_budget=args.failure_budget)
    seconds = time.perf_counter() - start
    owner = results[0]
    if ledger is not None and dataset is not None:
        spent = ledger.spent(dataset)
        print(f"  ledger {args.ledger}: this data set has spent epsilon {spent[0]:.3f}, delta {spent[1]:.2g} "
              f"of {args.budget[0]:g}, {args.budget[1]:g}")
    if "epsilon_spent" in owner:
        print(f"  differential privacy: epsilon spent {owner['epsilon_spent']:.3f} (target {config.dp_epsilon:g}), "
              f"delta {owner['delta']:g}, noise multiplier {owner['noise_multiplier']:.3f}")
    print(f"  {'':10}{'ROC AUC':>10}{'accuracy':>10}")
    print(f"  {config.mode:10}{owner['auc']:10.4f}{owner['accuracy']:10.4f}")
    print(f"  {'plain':10}{plain['auc']:10.4f}{plain['accuracy']:10.4f}")
    sent = [r["stats"]["bytes_sent"] for r in results]
    print(f"  {seconds:.1f} s; bytes sent per party: {sent}; rounds: {owner['stats']['rounds']}")
    for result in results:
        if "weights" in result:
            print(f"  weights revealed to party {result['rank']} only:",
                  {name: [round(v, 4) for v in value.reshape(-1).tolist()] for name, value in result["weights"].items()})
    if config.out:
        print(f"  each party's model shares are in {config.out}/party<rank>.npz; combine with smpc reveal-model")
    if args.report:
        report = {"secure": {"auc": owner["auc"], "accuracy": owner["accuracy"]},
                  "plain": {"auc": plain["auc"], "accuracy": plain["accuracy"]},
                  "seconds": seconds, "bytes_sent_per_party": sent, "rounds": owner["stats"]["rounds"],
                  "rows": {"train": plain["train_rows"], "test": plain["test_rows"]}}
        if "epsilon_spent" in owner:
            report.update(epsilon_spent=owner["epsilon_spent"], delta=owner["delta"])
        if config.mode == "fedavg":  # "secure" then holds the fedavg model's figures
            report.update(mode="fedavg", rounds_detail=owner["rounds"])
        Path(args.report).write_text(json.dumps(report, indent=2) + "\n")
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    header, rows = load_csv(args.data or embedded_dataset())
    positive = args.positive if args.positive is not None or args.data else "bad"
    schema = Schema.infer(header, rows, args.label, positive)
    schema.save(args.out)
    print(f"wrote {args.out}: {len(schema.numeric)} numeric and {len(schema.categorical)} categorical columns, "
          f"{schema.n_features} features, label {schema.label!r} positive {schema.positive!r}")
    return 0


def _bench_arguments(parser: argparse.ArgumentParser) -> None:
    from benchmarks.suite import build_parser

    build_parser(parser)


def _cmd_bench(args: argparse.Namespace) -> int:
    from benchmarks.suite import run_and_report

    return run_and_report(args)


def _cmd_reveal_model(args: argparse.Namespace) -> int:
    meta, plain = combine_shares(args.files)
    print(f"model of {meta['parties']} parties, layout {meta['layout']}")
    for name, value in plain.items():
        print(f"  {name} {tuple(value.shape)}: {[round(v, 5) for v in value.reshape(-1).tolist()[:12]]}"
              f"{' ...' if value.numel() > 12 else ''}")
    if args.out:
        torch.save({"meta": meta, "values": plain}, args.out)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
