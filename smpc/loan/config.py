"""``TrainConfig``: everything the loan job needs besides the session; public, identical on every party.

Validation errors name the config's fields in braces in their template (``{show_loss}``); ``str(error)`` shows
the field names, and the CLI renders them as its flags (``--show-loss``), so this module knows nothing of the
command line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_FIELD = re.compile(r"\{([a-z_]+)\}")

#: The models ``smpc train --model`` names: logistic (softmax) regression, a one-hidden-layer MLP (Tanh), and
#: the digits CNN (rows of H*W pixel columns, square, one channel).
MODELS = ("logreg", "mlp", "cnn")
#: The MLP's hidden width when ``--model mlp`` is given without ``--hidden``.
DEFAULT_HIDDEN = 32


class ConfigError(ValueError):
    """An impossible combination of settings.  ``template`` names fields as ``{field}``."""

    def __init__(self, template: str) -> None:
        self.template = template
        super().__init__(self.render())

    @property
    def fields(self) -> tuple[str, ...]:
        """The fields the message names, in order."""
        return tuple(_FIELD.findall(self.template))

    def render(self, names: Mapping[str, str] | None = None) -> str:
        """The message with each field shown as ``names[field]`` (default: the field's own name)."""
        return _FIELD.sub(lambda match: (names or {}).get(match.group(1), match.group(1)), self.template)


@dataclass(frozen=True)
class TrainConfig:
    """Everything the job needs besides the session; public, identical on every party."""

    data: str | None = None  # CSV path; None = the embedded German Credit data
    label: str = "creditability"
    positive: str | None = "bad"
    schema: str | None = None  # public schema file; None = agreed by the parties (joint_schema)
    epochs: int = 10
    lr: float = 0.1
    batch_size: int = 32
    hidden: int = 0  # 0 = logistic regression
    model: str | None = None  # "logreg", "mlp" or "cnn"; None = mlp when hidden > 0, else logreg
    momentum: float = 0.0
    weight_decay: float = 0.0
    seed: int = 0
    test_fraction: float = 0.3
    max_rows: int | None = None  # use only the first rows (quick runs and tests)
    joint_init: bool = False
    show_loss: bool = False
    audit: str | None = None  # directory for audit logs
    out: str | None = None  # directory for each party's model shares
    reveal_to: int | None = None
    own_rows_only: bool = False  # multi-host: `data` is this party's own file
    checkpoint_every: int = 0  # batches between checkpoints; 0 = none
    checkpoint_dir: str | None = None  # where each party writes its checkpoints
    resume: str | None = None  # continue from the newest checkpoint every party committed in this directory
    mode: str = "secure"  # "secure": train on shares; "fedavg": local plain training, secure aggregation
    rounds: int = 10  # fedavg rounds
    local_steps: int = 10  # fedavg: SGD steps per bank per round
    keep_shared: bool = False  # fedavg: the final model stays shared
    split_by: str | None = None  # deal training rows to banks by this column (skewed) instead of at random
    dp_epsilon: float | None = None  # differential privacy target over the whole run
    dp_delta: float = 1e-5
    dp_clip: float = 1.0  # per-example gradient (secure) or per-bank update (fedavg) L2 clip

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0 or self.hidden < 0:
            raise ConfigError("{epochs}, {batch_size} and {lr} must be positive, {hidden} non-negative")
        self._check_model()
        if self.checkpoint_every < 0:
            raise ConfigError("{checkpoint_every} must be 0 (off) or a positive number of batches")
        if self.checkpoint_every and not (self.checkpoint_dir or self.resume):
            raise ConfigError("{checkpoint_every} needs a {checkpoint_dir} (or a {resume} folder)")
        if self.mode not in ("secure", "fedavg"):
            raise ConfigError(f"{{mode}} must be secure or fedavg, not {self.mode!r}")
        if self.rounds < 1 or self.local_steps < 1:
            raise ConfigError("{rounds} and {local_steps} must be positive")
        if self.dp_epsilon is not None:
            self._check_privacy()
        if self.keep_shared and self.mode != "fedavg":
            raise ConfigError("{keep_shared} is for fedavg {mode} (secure mode never reveals the model)")

    def _check_model(self) -> None:
        if self.model not in (None, *MODELS):
            raise ConfigError(f"{{model}} must be one of {', '.join(MODELS)}, not {self.model!r}")
        if self.model in ("logreg", "cnn") and self.hidden:
            raise ConfigError(f"{{hidden}} sets the MLP's width; {{model}} {self.model} has no hidden layer")
        if self.architecture == "cnn" and self.mode != "secure":
            raise ConfigError("{model} cnn trains in secure {mode} only")

    @property
    def architecture(self) -> str:
        """The model: ``model``, else "mlp" with hidden units and "logreg" without."""
        return self.model or ("mlp" if self.hidden else "logreg")

    @property
    def hidden_units(self) -> int:
        """The MLP's hidden width: ``hidden``, or DEFAULT_HIDDEN for ``model="mlp"`` without it."""
        return self.hidden or DEFAULT_HIDDEN

    def _check_privacy(self) -> None:
        assert self.dp_epsilon is not None
        if not self.dp_epsilon > 0 or not 0 < self.dp_delta < 1 or not self.dp_clip > 0:
            raise ConfigError("{dp_epsilon} and {dp_clip} must be positive and {dp_delta} in (0, 1)")
        if self.mode == "secure" and self.architecture != "logreg":
            raise ConfigError("{dp_epsilon} in secure mode trains logistic regression only (no {hidden} or {model})")
        if self.mode == "secure" and (self.momentum or self.checkpoint_every or self.resume):
            raise ConfigError("{dp_epsilon} in secure mode runs plain SGD: no {momentum}, {checkpoint_every} "
                              "or {resume}")
        if self.show_loss:
            raise ConfigError("{show_loss} opens each batch's exact loss outside the privacy accountant (and the "
                              "divergence stop tells every party a bit about it): it cannot be combined with "
                              "{dp_epsilon}")
        if self.data is not None and self.schema is None:
            raise ConfigError("{dp_epsilon} needs a declared public schema ({schema}, e.g. one written by `smpc "
                              "schema`): one inferred from the rows at run time would release their category sets "
                              "and magnitudes outside the privacy accountant")

    @property
    def checkpoints(self) -> Path | None:
        """Directory checkpoints are written to (the resumed one unless another is given)."""
        chosen = self.checkpoint_dir or self.resume
        return Path(chosen) if chosen else None

    def fingerprint(self) -> dict[str, Any]:
        """What a resumed run must share with the checkpointed one (the model, data and schedule)."""
        keep = ("data", "label", "positive", "schema", "epochs", "lr", "batch_size", "hidden", "model", "momentum",
                "weight_decay", "seed", "test_fraction", "max_rows", "joint_init", "split_by")
        return {name: getattr(self, name) for name in keep}
