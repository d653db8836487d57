"""The ``smpc`` command: ``demo``, ``keygen``, ``roster``, ``dealer``, ``party``, ``train``, ``schema``,
``reveal-model`` and ``bench``.  The loan job's commands live in ``smpc.loan.commands``, the benchmark suite in
``smpc.bench``.

Every failure a user can cause (a bad file, a refused key, a lost peer) ends with one line saying what went
wrong and exit status 1 or 2, never a traceback from deep inside.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from network import NetworkError, Roster, read_public_key, write_keypair
from protocols import TruncationBudgetError
from smpc.bench.suite import build_parser as build_bench_parser
from smpc.bench.suite import run_and_report as run_bench
from smpc.hosts import connect_node, load_roster, roster_options
from smpc.loan.commands import (
    UsageError,
    add_train_arguments,
    cmd_reveal_model,
    cmd_schema,
    cmd_train,
    flag_names,
    run_party_job,
)
from smpc.loan.config import ConfigError
from smpc.loan.demo import demo_program, plain_reference
from smpc.loan.predict_commands import add_party_arguments, add_predict_arguments, cmd_party_predict, cmd_predict
from smpc.loan.results import party_report
from smpc.loan.schema import DataError
from smpc.loan.schema_flags import TaggedAppend
from smpc.memory import keep_freed_memory
from smpc.runner import PartyError, run_dealer, run_local
from smpc.session import Session


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        status = int(args.handler(args) or 0)
        sys.stdout.flush()  # here, where a reader gone early is caught, not at exit
        return status
    except BrokenPipeError:
        # The reader of our output quit (`smpc reveal-model ... | head`): stop quietly, as cat does, and let no
        # later flush of stdout complain (the Python docs' recipe, "Note on SIGPIPE").
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE: what a shell reports for a command the broken pipe ended
    except ConfigError as error:
        print(f"smpc {args.command}: error: {error.render(flag_names())}", file=sys.stderr)
        return 2
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
    _protocol_argument(demo)
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
    roster.add_argument("--dealer", nargs=2, metavar=("ADDRESS", "PUBFILE"),
                        help="tcp://HOST:PORT and public key file of the dealer; without it, the roster is for the "
                             "replicated protocol (exactly 3 parties, no dealer)")
    roster.add_argument("--frac-bits", type=int, default=16, help="fractional bits of the encoding (default 16)")
    roster.add_argument("--bind", action="append", metavar="RANK=ADDRESS",
                        help="where node RANK (a party's rank, or dealer) listens, if not on its address, e.g. "
                             "1=tcp://0.0.0.0:5555 to listen on every interface of its host (repeat per node)")
    roster.set_defaults(handler=_cmd_roster)

    dealer = commands.add_parser("dealer", help="run the dealer of a session described by a roster")
    _node_arguments(dealer)
    dealer.add_argument("--check-range", action="store_true",
                        help="serve parties that joined with Session.connect(..., check_range=True) (every node "
                             "must agree on it)")
    dealer.set_defaults(handler=_cmd_dealer)

    train = commands.add_parser("train", help="train the loan model with three banks on this machine")
    train.add_argument("--parties", type=int, default=3, help="number of banks / computing parties (default 3)")
    _protocol_argument(train)
    add_train_arguments(train, own_file=False)
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
    add_train_arguments(party, own_file=True)
    add_party_arguments(party)
    party.set_defaults(handler=_cmd_party)

    schema = commands.add_parser("schema", help="write a declared public schema (from --scale/--categories, or a "
                                                "CSV); without one the banks agree it at start-up")
    schema.add_argument("--data", help="CSV file (default: the embedded German Credit data)")
    schema.add_argument("--label", default="creditability", help="label column")
    schema.add_argument("--positive", help="label value counted as positive")
    schema.add_argument("--out", required=True, help="schema JSON file to write")
    schema.add_argument("--scale", action=TaggedAppend, const="scale", dest="overrides", metavar="COLUMN=VALUE",
                        help="declare COLUMN numeric with this public scale (a power of two); repeatable")
    schema.add_argument("--categories", action=TaggedAppend, const="categories", dest="overrides",
                        metavar="COLUMN=a,b,c", help="declare COLUMN categorical with exactly these categories, in "
                        "this order (\\, for a comma in one); repeatable.  Without --data the schema is these "
                        "flags alone, in their order (give --positive); with --data they replace inferred entries "
                        "(columns keep the data's order)")
    schema.set_defaults(handler=cmd_schema)

    bench = commands.add_parser("bench", help="the benchmark suite: time, bytes and rounds per op for 2 and 3 "
                                              "parties over CurveZMQ, against plain torch; JSON and PNG under --out")
    build_bench_parser(bench)
    bench.set_defaults(handler=_cmd_bench)

    reveal = commands.add_parser("reveal-model", help="combine every party's model shares (the model owner's step)")
    reveal.add_argument("files", nargs="+", help="the parties' party<rank>.npz files, one per party")
    reveal.add_argument("--out", help="write the model to this .pt file: TorchScript taking raw rows (strings, the "
                                      "schema's columns), returning the probability of the positive label")
    reveal.set_defaults(handler=cmd_reveal_model)

    predict = commands.add_parser("predict", help="run a revealed model (smpc reveal-model --out) on a CSV's rows "
                                                  "in plain torch")
    add_predict_arguments(predict)
    predict.set_defaults(handler=cmd_predict)
    for command in commands.choices.values():
        command.formatter_class = _HelpWithDefaults
    return parser


class _HelpWithDefaults(argparse.HelpFormatter):
    """Help that states every option's default value: "(default X)" appended unless the text speaks of one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        unset = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        if action.option_strings and not unset and "default" not in text:  # "is": a default of 0 is stated
            text += " (default %(default)s)"
        return text


def _protocol_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--protocol", choices=("auto", "dealer", "replicated"), default="auto",
                        help="replicated: 2-out-of-3 replicated shares, exactly three parties, no dealer; dealer: "
                             "additive shares and a dealer process, any number of parties; auto (default): "
                             "replicated for three parties, dealer otherwise")


def resolve_protocol(args: argparse.Namespace) -> str:
    """The protocol family a command runs: ``--protocol``, with "auto" meaning replicated for three parties
    (no fourth party needed) and dealer for any other count; ``--truncation local`` means the dealer family."""
    if args.protocol != "auto":
        return str(args.protocol)
    if args.parties == 3 and getattr(args, "truncation", "dealer") != "local":
        return "replicated"
    return "dealer"


def _node_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--roster", required=True, help="roster file (smpc roster)")
    parser.add_argument("--key", required=True, help="this node's secret key file (smpc keygen)")
    parser.add_argument("--recv-timeout", type=float, default=120.0,
                        help="seconds to wait for any message (default %(default)g)")
    parser.add_argument("--connect-timeout", type=float, default=300.0,
                        help="seconds to wait for every node of the roster to come up (default %(default)g)")


def _cmd_demo(args: argparse.Namespace) -> int:
    if args.parties < 2:
        raise UsageError("--parties must be at least 2")
    where = "each its own process over CurveZMQ on 127.0.0.1" if args.transport == "zmq" else "threads in this process"
    args.protocol = resolve_protocol(args)
    print(f"smpc demo: {args.parties} banks{' and a dealer' if args.protocol == 'dealer' else ''}, {where}")
    start = time.perf_counter()
    results = run_local(demo_program, parties=args.parties, transport=args.transport, protocol=args.protocol)
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
    if args.dealer is None and len(args.party) != 3:
        raise UsageError(f"a roster without --dealer is for the replicated protocol, exactly 3 parties; got "
                         f"{len(args.party)} --party")
    def node(address: str, pubfile: str) -> dict[str, str]:
        return {"address": address, "public_key": read_public_key(pubfile).decode("ascii")}

    document = {
        "session": args.session,
        "frac_bits": args.frac_bits,
        "parties": [node(address, pub) for address, pub in args.party],
        **({"dealer": node(*args.dealer)} if args.dealer else {}),
    }
    _add_binds(args.bind or [], document)
    out = Path(args.out)
    out.write_text(json.dumps(document, indent=2) + "\n")
    try:
        Roster.load(out)
    except ValueError:
        out.unlink()
        raise
    kind = "and a dealer" if args.dealer else "and no dealer (replicated protocol)"
    print(f"wrote {out}: {len(args.party)} parties {kind}")
    return 0


def _add_binds(flags: list[str], document: dict[str, Any]) -> None:
    """Write ``--bind RANK=ADDRESS`` flags into the roster document's entries ("bind"); UsageError for a malformed
    flag, a rank the roster does not have, or a node given twice.  The roster checks the addresses themselves."""
    nodes = [*document["parties"], *([document["dealer"]] if "dealer" in document else [])]
    ranks = f"a party rank 0..{len(document['parties']) - 1}" + (
        ", or dealer" if "dealer" in document else "; it has no dealer")
    for flag in flags:
        rank, equals, address = flag.partition("=")
        rank = rank.strip()
        if not equals or not address:
            raise UsageError(f"--bind {flag}: give RANK=ADDRESS, e.g. 1=tcp://0.0.0.0:5555")
        if rank == "dealer" and "dealer" in document:
            entry = document["dealer"]
        elif rank.isdigit() and int(rank) < len(document["parties"]):
            entry = nodes[int(rank)]
        else:
            raise UsageError(f"--bind {flag}: {rank!r} is not a node of this roster ({ranks})")
        if "bind" in entry:
            raise UsageError(f"--bind {flag}: that node already has --bind {rank}={entry['bind']}")
        entry["bind"] = address


def _cmd_dealer(args: argparse.Namespace) -> int:
    roster = load_roster(args.roster)
    if roster.dealer is None:
        raise UsageError(f"{args.roster} has no dealer: its session runs the replicated protocol, three parties "
                         "and nothing else")
    options = roster_options(roster, recv_timeout=args.recv_timeout, connect_timeout=args.connect_timeout,
                             check_range=args.check_range)
    keep_freed_memory()  # the dealer's process: reuse freed pages (smpc.memory)
    print(f"smpc dealer: waiting for {roster.n_parties} parties of session {roster.session!r}", flush=True)
    transport = connect_node(roster.dealer_id, roster, args.key, options)
    served = run_dealer(transport, roster.n_parties)
    print(f"smpc dealer: served {served} requests; session over")
    return 0


def _cmd_party(args: argparse.Namespace) -> int:
    if args.predict:
        return cmd_party_predict(args)
    if args.model_shares:
        raise UsageError("--model-shares is for private inference: add --predict")
    if args.report and not args.data:
        raise UsageError("--report is written by the loan job (--data) or private inference (--predict)")
    keep_freed_memory()  # the party's process: reuse freed pages (smpc.memory)
    print(f"smpc party {args.rank}: connecting", flush=True)
    with Session.connect(args.rank, args.roster, args.key, recv_timeout=args.recv_timeout,
                         connect_timeout=args.connect_timeout) as session:
        if args.data is None:
            demo = demo_program(session)
            stats = demo["stats"]
        else:
            result = run_party_job(session, args)
            stats = result.stats
            if args.report:
                document = party_report(result, session.world_size, session.protocol, args.mode)
                Path(args.report).write_text(json.dumps(document, indent=2) + "\n")
    if args.data is None:
        _print_demo(demo, session.world_size)
    print(f"smpc party {args.rank}: sent {stats['bytes_sent']} bytes, {stats['rounds']} rounds")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    args.protocol = resolve_protocol(args)
    return cmd_train(args)


def _cmd_bench(args: argparse.Namespace) -> int:
    return run_bench(args)


if __name__ == "__main__":
    sys.exit(main())
