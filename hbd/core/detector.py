"""Per-path inter-arrival statistics and the optional phi-accrual failure detector.

`ArrivalStats` keeps, for one (node, path), the recent heartbeat inter-arrival times and
the recent frame loss (from sequence gaps): mean interval, jitter and loss for `hbctl
status`, and the sample the detector reasons from.

`PhiAccrual` (Hayashibara et al., 2004; `adaptive_detector on`) turns that sample into a
timeout for one PATH: the silence after which the probability that a heartbeat is still
merely late drops below 10**-threshold under a normal model of the intervals, plus an
acceptable pause of a few keepalives so one or two lost frames never call a path dead.
The result is always clamped to at most the deadtime, so the detector can only call a
path dead sooner, never later. It is never used for nodes: membership declares a node
dead from its deadtime alone, so a node is never called dead later (or sooner) than
deadtime because of it.
"""

from __future__ import annotations

import math
from collections import deque

WINDOW = 100  # intervals kept for the detector's sample
MEAN_GAIN = 1 / 8  # EWMA gain of the mean interval shown in status
JITTER_GAIN = 1 / 16  # EWMA gain of the jitter, as RFC 3550's interarrival jitter
LOSS_GAIN = 1 / 32  # EWMA gain of the loss fraction (per frame expected)


class ArrivalStats:
    """Inter-arrival times and loss on one path from one peer."""

    __slots__ = ("_intervals", "_sum", "_sumsq", "jitter", "loss", "lost", "mean", "received")

    def __init__(self) -> None:
        self._intervals: deque[float] = deque(maxlen=WINDOW)
        self._sum = 0.0  # of the intervals in the window, kept as they come and go
        self._sumsq = 0.0
        self.mean: float | None = None  # smoothed mean interval, seconds
        self.jitter: float = 0.0  # smoothed |interval - mean|, seconds
        self.loss: float = 0.0  # smoothed fraction of frames lost, 0..1
        self.received = 0  # frames received (all time)
        self.lost = 0  # frames missing from sequence gaps (all time)

    def observe_interval(self, interval: float) -> None:
        """A heartbeat arrived `interval` seconds after the previous one on this path."""
        if interval < 0 or not math.isfinite(interval):
            return
        if len(self._intervals) == WINDOW:
            old = self._intervals[0]
            self._sum -= old
            self._sumsq -= old * old
        self._intervals.append(interval)
        self._sum += interval
        self._sumsq += interval * interval
        if self.mean is None:
            self.mean = interval
            return
        self.jitter += JITTER_GAIN * (abs(interval - self.mean) - self.jitter)
        self.mean += MEAN_GAIN * (interval - self.mean)

    def observe_frame(self, gap: int) -> None:
        """A fresh frame arrived, `gap` sequence numbers after the last one seen here."""
        gap = max(0, min(gap, 1000))  # a restart or a long cut is not a loss burst
        self.lost += gap
        self.received += 1
        self.loss = self.loss * (1 - LOSS_GAIN) ** gap + (1 - (1 - LOSS_GAIN) ** gap)
        self.loss *= 1 - LOSS_GAIN

    @property
    def samples(self) -> int:
        return len(self._intervals)

    def sample_mean(self) -> float | None:
        if not self._intervals:
            return None
        return self._sum / len(self._intervals)

    def sample_stddev(self) -> float | None:
        n = len(self._intervals)
        if n < 2:
            return None
        mean = self._sum / n
        return math.sqrt(max(0.0, self._sumsq - n * mean * mean) / (n - 1))


class PhiAccrual:
    """Phi-accrual timeout for one path, from its `ArrivalStats`.

    `threshold` is phi (suspicion is 10**-phi that the heartbeat is merely late);
    `pause` is an acceptable pause added on top (seconds, default two keepalives);
    `min_samples` intervals are needed before the detector says anything.
    """

    __slots__ = ("_z", "keepalive", "min_samples", "pause", "threshold")

    def __init__(
        self,
        keepalive: float,
        *,
        threshold: float = 8.0,
        pause: float | None = None,
        min_samples: int = 10,
    ) -> None:
        self.keepalive = keepalive
        self.threshold = threshold
        self.pause = 2 * keepalive if pause is None else pause
        self.min_samples = min_samples
        self._z = _normal_tail_quantile(10**-threshold)

    def _spread(self, stats: ArrivalStats) -> tuple[float, float] | None:
        mean = stats.sample_mean()
        sd = stats.sample_stddev()
        if stats.samples < self.min_samples or mean is None or sd is None:
            return None
        return mean, max(sd, mean / 10, 0.01)

    def phi(self, stats: ArrivalStats, silence: float) -> float | None:
        """Suspicion after `silence` seconds without a heartbeat (None: too few samples)."""
        spread = self._spread(stats)
        if spread is None:
            return None
        mean, sd = spread
        later = 1 - _normal_cdf((silence - mean - self.pause) / sd)
        return math.inf if later <= 0 else -math.log10(later)

    def timeout(self, stats: ArrivalStats, deadtime: float) -> float:
        """The silence after which the path is dead: never more than `deadtime`."""
        spread = self._spread(stats)
        if spread is None:
            return deadtime
        mean, sd = spread
        return min(deadtime, mean + self.pause + self._z * sd)


# The standard normal distribution, as statistics.NormalDist computes it (whose module
# would bring decimal, fractions and random into the daemon for these two lines).
def _normal_cdf(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def _normal_tail_quantile(tail: float) -> float:
    """The z whose upper tail (1 - cdf) is `tail` (0 < tail < 1), by bisection on erfc,
    which keeps its precision far out in the tail (where 1 - cdf has none left)."""
    low, high = -40.0, 40.0
    for _ in range(200):
        mid = (low + high) / 2
        if mid in (low, high):
            break
        if 0.5 * math.erfc(mid / math.sqrt(2.0)) > tail:
            low = mid
        else:
            high = mid
    return high
