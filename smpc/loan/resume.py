"""Checkpoints of a secure training run: what each party saves, the round in which every party confirms it,
and resuming from the newest checkpoint every party committed (shares re-randomised).  File storage is
``checkpoint``."""

from __future__ import annotations

from pathlib import Path

import torch

import smpc.nn as snn
from smpc.loan import checkpoint as checkpoint_files
from smpc.loan.config import TrainConfig
from smpc.optim import SGD
from smpc.session import Session
from smpc.tensor import SharedTensor


def _state_arrays(model: snn.Module, optimizer: SGD, mean: SharedTensor, inverse_std: SharedTensor
                  ) -> dict[str, torch.Tensor]:
    """This party's shares of everything training carries from one batch to the next."""
    arrays = {f"model/{name}": share for name, share in model.state_shares().items()}
    for name, parameter in model.named_parameters():
        buffer = optimizer.state.get(parameter, {}).get("momentum_buffer")
        if buffer is not None:
            arrays[f"momentum/{name}"] = buffer.local_share
    arrays["standardise/mean"] = mean.local_share
    arrays["standardise/inverse_std"] = inverse_std.local_share
    return arrays


def save_checkpoint(session: Session, config: TrainConfig, step: int, model: snn.Module, optimizer: SGD,
                mean: SharedTensor, inverse_std: SharedTensor, losses: list[float]) -> None:
    """Write this party's checkpoint of ``step``, then (one round) learn that every party wrote its own,
    then commit.  A crash before the commit leaves the previous committed checkpoint in force."""
    party = session.party
    directory = config.checkpoints
    assert directory is not None
    arrays = {name: share.detach().cpu().numpy() for name, share in _state_arrays(model, optimizer, mean,
                                                                                    inverse_std).items()}
    meta = {"parties": session.world_size, "protocol": session.protocol, "config": config.fingerprint(),
            "losses": losses,
            "counters": {"tag": party.tag, "dealer_requests": party.dealer_requests}}
    checkpoint_files.write(directory, step, session.rank, arrays, meta)
    tag = party.next_tag()
    written = torch.tensor([step], dtype=torch.int64)
    for peer in party.others:
        party.send(peer, tag, written)
    for peer in party.others:
        theirs = party.recv(peer, tag, "checkpoint written")
        if theirs.tolist() != [step]:
            raise checkpoint_files.CheckpointError(f"party {peer} wrote checkpoint {theirs.tolist()}, not {step}")
    party.rounds += 1
    checkpoint_files.commit(directory, step, session.rank)


def resume(session: Session, config: TrainConfig, model: snn.Module, optimizer: SGD
            ) -> tuple[int, list[float], SharedTensor, SharedTensor]:
    """Agree with every party on the newest checkpoint all of them committed, load this party's part, and
    re-randomise every share (fresh pair and dealer keys: no mask or triple is used twice).
    Returns (batches done, losses so far, mean, inverse_std)."""
    party = session.party
    directory = Path(config.resume or "")
    if not directory.is_dir():
        raise checkpoint_files.CheckpointError(f"--resume {directory}: no such directory")
    mine = checkpoint_files.committed_steps(directory, session.rank)
    tag = party.next_tag()
    for peer in party.others:
        party.send(peer, tag, torch.tensor(mine or [-1], dtype=torch.int64))
    common = set(mine)
    for peer in party.others:
        common &= set(party.recv(peer, tag, "checkpoint steps").tolist())
    party.rounds += 1
    if not common:
        raise checkpoint_files.CheckpointError(
            f"--resume {directory}: no checkpoint that every party committed (party {session.rank} has "
            f"{mine or 'none'}); start again without --resume")
    step = max(common)
    arrays, meta = checkpoint_files.load(directory, step, session.rank)
    if meta.get("protocol", "dealer") != session.protocol:
        raise checkpoint_files.CheckpointError(
            f"--resume {directory}: checkpoint {step} was made with the {meta.get('protocol', 'dealer')} protocol, "
            f"this run uses {session.protocol}; resume with the same protocol")
    if meta.get("parties") != session.world_size or meta.get("config") != config.fingerprint():
        saved = meta.get("config", {})
        differing = sorted(k for k in set(saved) | set(config.fingerprint())
                           if saved.get(k) != config.fingerprint().get(k))
        raise checkpoint_files.CheckpointError(
            f"--resume {directory}: checkpoint {step} was made with other settings "
            f"({', '.join(differing) or 'parties'}); resume with the same options")
    family = session.family
    fresh = {name: family.local(family.rerandomize(family.from_local(torch.from_numpy(arrays[name]).to(party.device))))
             for name in sorted(arrays)}
    model.load_state_shares({name[len("model/"):]: share for name, share in fresh.items() if name.startswith("model/")})
    for name, parameter in model.named_parameters():
        if f"momentum/{name}" in fresh:
            buffer = SharedTensor(session, fresh[f"momentum/{name}"])
            optimizer.state.setdefault(parameter, {})["momentum_buffer"] = buffer
    # Program tags continue past the checkpointed run's.  Dealer streams restart at 1 with the dealer (its
    # serve loop counts from 1): every key of this session is fresh, so no stream of the old keys, hence no
    # mask or triple, is ever drawn again.
    party.tag = max(party.tag, int(meta["counters"]["tag"]))
    mean = SharedTensor(session, fresh["standardise/mean"])
    inverse_std = SharedTensor(session, fresh["standardise/inverse_std"])
    return step, list(meta.get("losses", [])), mean, inverse_std
