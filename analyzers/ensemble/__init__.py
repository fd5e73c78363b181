"""Online ensemble statistics over the member axis: nothing of a member is kept after it is applied.

Per point (every cell of a rank's share of the field) and per time step:

* ``moments.Moments``: count, mean, variance, skewness, kurtosis (Welford /
  Pébay updates), min, max, probability of exceeding thresholds; an exact
  pairwise ``merge`` of two partial states (members split in any way);
* ``quantiles.Quantiles``: quantiles by averaged stochastic approximation
  (Robbins-Monro with Polyak-Ruppert averaging; the error is stated there);
* ``sobol.Sobol``: Sobol first-order and total indices by the Martinez
  (correlation) estimators with 95 % confidence intervals, from pick-freeze
  groups of p + 2 members (A, B and the p mixed C_i);
* ``stats.StepStats`` / ``stats.EnsembleStats``: the bundle per time step,
  with ``state_dict`` / ``from_state_dict`` for checkpoints and ``merge``.

No MPI and no ADIOS2 here (the analyzers' rule): each rank holds the states
of its own cells, so ranks never need to merge; ``merge`` is for partial
member sets (a Sobol group applied only once it is complete, restarts).
"""

from __future__ import annotations

from intransit.analyzers.ensemble.moments import Moments
from intransit.analyzers.ensemble.quantiles import Quantiles
from intransit.analyzers.ensemble.sobol import Sobol
from intransit.analyzers.ensemble.stats import EnsembleStats, StepStats

__all__ = ["EnsembleStats", "Moments", "Quantiles", "Sobol", "StepStats"]
