"""Federated hypernetworks on Flower: personalised models (pFedHN) and protection against
gradient inversion (HyperFL), with the FedAvg baselines, non-IID splits and a DLG/iDLG attack.

- :mod:`.partition`, :mod:`.clients`: pathological and Dirichlet splits, MNIST per client;
- :mod:`.pfedhn`, :mod:`.novel_client`: pFedHN's server update (a vector-Jacobian product of
  the clients' weight changes) and novel clients (only the embedding trained);
- :mod:`.hyperfl`: HyperFL's client (private embedding and classifier, shared hypernetwork);
- :mod:`.apps`: the Flower strategy and Client/Server apps, and Flower's simulation engine;
- :mod:`.attack`: DLG / iDLG gradient inversion, PSNR and SSIM.

Flower (``flwr``, the ``federated`` extra) is imported only by the functions of :mod:`.apps`
and by :mod:`.deployment`; torchmetrics only when PSNR/SSIM are computed.
"""

from hyperdnn.methods.federated.apps import (
    combined_client_app,
    combined_server_app,
    fedavg_client_app,
    fedavg_server_app,
    hyperfl_client_app,
    hyperfl_server_app,
    pfedhn_client_app,
    pfedhn_server_app,
    pfedhn_strategy,
    simulate,
)
from hyperdnn.methods.federated.attack import Reconstruction, image_scores, infer_labels, invert_gradients
from hyperdnn.methods.federated.clients import ClientData, MNISTPartition, mnist_clients
from hyperdnn.methods.federated.hyperfl import hyperfl_local_training, hyperfl_model, private_state, shared_state
from hyperdnn.methods.federated.novel_client import tune_novel_client
from hyperdnn.methods.federated.partition import class_counts, dirichlet_shares, pathological_shares, split_by_shares
from hyperdnn.methods.federated.pfedhn import PFedHN, PFedHNStep, pfedhn_local_update, pfedhn_model
from hyperdnn.methods.federated.targets import FederatedLeNet

__all__ = [
    "ClientData",
    "FederatedLeNet",
    "MNISTPartition",
    "PFedHN",
    "PFedHNStep",
    "Reconstruction",
    "class_counts",
    "combined_client_app",
    "combined_server_app",
    "dirichlet_shares",
    "fedavg_client_app",
    "fedavg_server_app",
    "hyperfl_client_app",
    "hyperfl_local_training",
    "hyperfl_model",
    "hyperfl_server_app",
    "image_scores",
    "infer_labels",
    "invert_gradients",
    "mnist_clients",
    "pathological_shares",
    "pfedhn_client_app",
    "pfedhn_local_update",
    "pfedhn_model",
    "pfedhn_server_app",
    "pfedhn_strategy",
    "private_state",
    "shared_state",
    "simulate",
    "split_by_shares",
    "tune_novel_client",
]
