"""Pareto-front learning: preference-conditioned hypernetworks (PHN) and Pareto set learning (SVH-PSL).

- :class:`ParetoHyperNetwork`: PHN-LS / PHN-EPO (Navon et al., ICLR 2021) on a HyperDNN
  whose input is a :class:`Preference` on the simplex.
- :class:`ParetoSetLearning`: PSL (Lin et al., NeurIPS 2022) and SVH-PSL (Nguyen et al.,
  AAAI 2025) for expensive black-box problems, on Gaussian-process surrogates.
- :func:`re_problem`: the seven real-world engineering problems of the RE suite (Tanabe &
  Ishibuchi 2020) that SVH-PSL is evaluated on, and :func:`approximate_front` for their fronts.
- :func:`synthetic_problem`: SVH-PSL's synthetic problems F2 and VLMOP2, with closed-form fronts.

The solvers (scipy's ``linprog``), the hypervolume (pymoo) and the GPs (gpytorch) come
from the optional ``pareto`` extra (``pip install hyperdnn[pareto]``), imported when used.
"""

from hyperdnn.methods.pareto.epo import EPOSolution, epo_loss, epo_weights
from hyperdnn.methods.pareto.evaluation import ParetoResults, evaluate_front
from hyperdnn.methods.pareto.hypervolume import hypervolume
from hyperdnn.methods.pareto.multi_lenet import MultiLeNet
from hyperdnn.methods.pareto.phn import ParetoHyperNetwork, ParetoStep
from hyperdnn.methods.pareto.preference_input import Preference, PreferenceInput
from hyperdnn.methods.pareto.preferences import check_simplex, circle_rays, sample_dirichlet
from hyperdnn.methods.pareto.psl import PSLHistory, ParetoSetLearning, log_hypervolume_difference, pareto_set_model
from hyperdnn.methods.pareto.re_problems import RE_PROBLEMS, REProblem, approximate_front, non_dominated_archive, re_problem
from hyperdnn.methods.pareto.scalarization import linear_scalarization, tchebycheff
from hyperdnn.methods.pareto.surrogate import GPSurrogate
from hyperdnn.methods.pareto.synthetic import SYNTHETIC_PROBLEMS, SyntheticProblem, synthetic_problem
from hyperdnn.methods.pareto.svgd import local_kernel, rbf_bandwidth, stein_loss, svgd_direction

__all__ = [
    "EPOSolution",
    "GPSurrogate",
    "MultiLeNet",
    "PSLHistory",
    "ParetoHyperNetwork",
    "ParetoResults",
    "ParetoSetLearning",
    "ParetoStep",
    "Preference",
    "PreferenceInput",
    "REProblem",
    "RE_PROBLEMS",
    "SYNTHETIC_PROBLEMS",
    "SyntheticProblem",
    "approximate_front",
    "check_simplex",
    "circle_rays",
    "epo_loss",
    "epo_weights",
    "evaluate_front",
    "hypervolume",
    "linear_scalarization",
    "local_kernel",
    "log_hypervolume_difference",
    "non_dominated_archive",
    "pareto_set_model",
    "rbf_bandwidth",
    "re_problem",
    "sample_dirichlet",
    "stein_loss",
    "svgd_direction",
    "synthetic_problem",
    "tchebycheff",
]
