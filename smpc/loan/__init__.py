"""The loan job: banks train a model together on their joint rows; nobody sees another bank's rows or the
model's weights.  ``smpc train`` runs it on one machine, ``smpc party --data`` across hosts.

Modules, one job each: ``config`` (TrainConfig), ``schema`` (the public schema and the CSV reader),
``joint_schema`` and ``secret_union`` (the schema the parties agree from their rows), ``schema_flags``
(``smpc schema``'s overrides), ``data`` (what each party holds, the split, the model owner's architecture, the
batch order), ``job`` (train_party, what every party runs), ``secure`` (training on shares), ``dp_training``
(DP-SGD on shares), ``fedavg_job`` (federated averaging), ``resume`` and ``checkpoint`` (checkpoints),
``model_files`` (share files and reveal-model), ``audit`` (the audit log), ``plain`` (the plain reference),
``metrics``, ``results``, ``progress``, ``demo`` (the loan-book demo) and ``commands`` (the CLI commands).
Using a trained model: ``scripted`` (the revealed model as TorchScript on raw rows), ``rows`` (rows to score,
predictions files), ``shared_model`` (a party's share file back on shares), ``private_inference`` (scoring on
shares, predictions to the row owner only) and ``predict_commands`` (``smpc predict``, ``smpc party --predict``).
"""

from smpc.loan.config import ConfigError, TrainConfig
from smpc.loan.job import train_party
from smpc.loan.plain import train_plain
from smpc.loan.results import PartyResult, PlainResult, PrivacySpent
from smpc.loan.schema import DataError, Schema

__all__ = ["ConfigError", "DataError", "PartyResult", "PlainResult", "PrivacySpent", "Schema", "TrainConfig",
           "train_party", "train_plain"]
