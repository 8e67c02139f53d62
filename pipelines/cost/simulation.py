"""A discrete-event model of one run on Karpenter capacity, seeded and deterministic.

What it models, in the order things happen:

* At the start the worker pods are pending: Karpenter packs them into NodeClaims (the
  ``claims`` of the scenario) and launches them; the scheduler and job runner (or the
  Spark driver) go to on-demand nodes of the stable pool. A node's pods run
  ``launch_seconds`` after its NodeClaim is created (instance start, boot, kubelet,
  image pull).
* Each pod offers ``slots_per_pod`` slots (one single-threaded Dask worker; a Spark
  executor's task slots). A free slot takes the pending unit with the lowest index, as
  Dask's and Spark's schedulers do for units submitted in plan order.
* Spot launches: a launch finds spot capacity (``capacity.try_spot``) or fails with an
  insufficient-capacity error; Karpenter then marks spot unavailable for
  ``ice_cache_seconds`` (its unavailable-offerings cache, 3 minutes). *Spot first*
  launches on-demand instead, for the claim and for every claim made while the cache
  holds; *spot only* retries when the cache expires; *on-demand* never tries spot.
* An on-demand fallback node is replaced by spot once spot capacity is back and the node
  has been settled for the pool's ``consolidateAfter`` (Karpenter's replace
  consolidation: the spot node is launched, and when it is ready the on-demand node's
  pods are evicted as on a notice). Disruption budgets are not modelled.
* An interruption notice comes ``notice_seconds`` (2 minutes) before EC2 takes the node.
  ``graceful`` (Karpenter's interruption queue, and the workers' preStop retire): from
  the notice no new unit starts on the node, a unit in flight finishes if it can within
  ``grace_seconds``, else it is lost then; the pods are evicted, a replacement NodeClaim
  is launched at once and Karpenter terminates the node when its pods are gone. ``hard``:
  nothing happens until EC2 takes the node; every unit in flight on it is lost, and the
  replacement is launched then.
* A lost unit goes back to the queue: its work so far is *rework*. A unit lost more
  than ``allowed_failures`` times would fail the run (Dask's ``KilledWorker``, Spark's
  ``spark.task.maxFailures``); the run is marked failed and the model goes on, as a
  rerun would resume it.
* When the last unit is done, the pods go; the nodes are empty and Karpenter removes
  them after the pool's ``consolidateAfter``. Cost is per node, as EC2 and EBS bill it
  (``pricing``).

With ``interruptions=False`` nothing is interrupted and every launch finds capacity:
the run is a plain list schedule, the estimate ``tokenyard cost`` prints without
``--simulate``.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Literal, Protocol

from pipelines.cost import pricing
from pipelines.cost.interruptions import Trace, markets

Strategy = Literal["spot-first", "on-demand", "spot"]
STRATEGIES: tuple[Strategy, ...] = ("spot-first", "on-demand", "spot")
Handling = Literal["graceful", "hard"]

#: Karpenter's unavailable-offerings cache: an offering that failed is skipped this long
ICE_CACHE_SECONDS = 180.0
#: EC2's spot interruption notice
NOTICE_SECONDS = 120.0
#: a run that has not finished after this much simulated time is given up
MAX_SIMULATED_SECONDS = 365 * 86400.0


@dataclass(frozen=True)
class Claim:
    """A NodeClaim: the pods it holds and what its node costs and risks."""

    pods: int
    on_demand_usd_per_hour: float
    spot_usd_per_hour: float
    #: spot interruptions per node-hour (band model)
    interruption_per_hour: float = 0.0


@dataclass(frozen=True)
class Timing:
    """How long Kubernetes, Karpenter and EC2 take, in seconds."""

    launch_seconds: float
    consolidate_after_seconds: float
    stable_consolidate_after_seconds: float
    grace_seconds: float
    notice_seconds: float = NOTICE_SECONDS
    ice_cache_seconds: float = ICE_CACHE_SECONDS


@dataclass(frozen=True)
class Scenario:
    """Everything one simulated run needs; the workload is ``unit_seconds``."""

    unit_seconds: tuple[float, ...]
    slots_per_pod: int
    claims: tuple[Claim, ...]
    #: the stable pool's on-demand nodes together (schedulers, runners, drivers)
    stable_usd_per_hour: float
    stable_nodes: int
    timing: Timing
    root_volume: pricing.RootVolume
    strategy: Strategy = "spot-first"
    handling: Handling = "graceful"
    allowed_failures: int = 20


class Capacity(Protocol):
    """Where spot capacity and interruptions come from."""

    def start(self, rng: random.Random) -> None: ...

    def try_spot(self, t: float, claim: Claim, rng: random.Random) -> float | None:
        """None when no spot capacity; else when EC2 will take the node (inf: never)."""


@dataclass(frozen=True)
class NoInterruptions:
    """Every spot launch succeeds and no node is ever interrupted."""

    def start(self, rng: random.Random) -> None:
        pass

    def try_spot(self, t: float, claim: Claim, rng: random.Random) -> float | None:
        return math.inf


@dataclass(frozen=True)
class BandCapacity:
    """Interruptions at each claim's band rate; a launch fails with ``launch_failure``."""

    launch_failure: float = 0.0
    #: multiplies every claim's interruption rate (sensitivity, what-ifs)
    rate_factor: float = 1.0

    def start(self, rng: random.Random) -> None:
        pass

    def try_spot(self, t: float, claim: Claim, rng: random.Random) -> float | None:
        if self.launch_failure and rng.random() < self.launch_failure:
            return None
        rate = claim.interruption_per_hour * self.rate_factor / 3600
        return t + rng.expovariate(rate) if rate > 0 else math.inf


@dataclass
class TraceCapacity:
    """A measured trace replayed as ``market_count`` markets (see ``interruptions``)."""

    trace: Trace
    market_count: int = 1
    _markets: list = field(default_factory=list, repr=False)

    def start(self, rng: random.Random) -> None:
        self._markets = markets(self.trace, self.market_count, rng)

    def try_spot(self, t: float, claim: Claim, rng: random.Random) -> float | None:
        # EC2 does not launch into capacity it is reclaiming: a market that goes down
        # within the notice period has no capacity to offer
        up = [(m, down) for m in self._markets if m.is_up(t)
              for down in (m.next_down(t),) if down - t > NOTICE_SECONDS]
        if not up:
            return None
        return rng.choice(up)[1]


@dataclass(frozen=True)
class Loss:
    """Units a node took with it: when, which node, and the work lost."""

    time: float
    node: int
    units: tuple[int, ...]
    lost_seconds: float
    #: units finished when it happened: where in the run, as progress
    done: int


@dataclass(frozen=True)
class RunResult:
    wall_seconds: float
    usd: float
    worker_usd: float
    stable_usd: float
    volume_usd: float
    instance_hours: float
    spot_node_seconds: float
    on_demand_node_seconds: float
    rework_cpu_seconds: float
    units_redone: int
    interruptions: int
    spot_launch_failures: int
    #: on-demand fallback nodes replaced by spot (Karpenter's consolidation)
    replacements: int
    #: a unit was lost more often than the engine allows: the run would have failed
    failed: bool
    finished: bool
    losses: tuple[Loss, ...]

    @property
    def on_demand_share(self) -> float:
        total = self.spot_node_seconds + self.on_demand_node_seconds
        return self.on_demand_node_seconds / total if total else 0.0


class _Node:
    __slots__ = ("id", "claim", "spot", "launched", "ready", "ended", "by_ec2", "state",
                 "slots", "interrupt_at", "replaces")

    def __init__(self, node_id: int, claim: Claim, spot: bool, launched: float) -> None:
        self.id = node_id
        self.claim = claim
        self.spot = spot
        self.launched = launched
        self.ready = math.inf
        self.ended: float | None = None
        self.by_ec2 = False
        self.state = "launching"  # launching | ready | draining | gone
        self.slots: list[int] = []
        self.interrupt_at = math.inf
        #: the on-demand node whose pods this spot node takes over (consolidation)
        self.replaces: int | None = None


class _Run:
    def __init__(self, s: Scenario, capacity: Capacity, rng: random.Random) -> None:
        self.s = s
        self.capacity = capacity
        self.rng = rng
        self.events: list = []
        self.seq = 0
        self.now = 0.0
        # units never started are taken in order; lost ones wait in a heap, first
        self.next_unit = 0
        self.requeued: list[int] = []
        self.remaining = len(s.unit_seconds)
        self.losses_of = [0] * len(s.unit_seconds)
        self.nodes: list[_Node] = []
        # slots: node id, unit in flight (-1 idle), its start, and a token for its event
        self.slot_node: list[int] = []
        self.slot_unit: list[int] = []
        self.slot_start: list[float] = []
        self.slot_token: list[int] = []
        self.idle: deque[int] = deque()
        self.ice_until = -math.inf
        self.rework = 0.0
        self.redone = 0
        self.interruptions = 0
        self.launch_failures = 0
        self.replacements = 0
        self.failed = False
        self.losses: list[Loss] = []

    # -- events -------------------------------------------------------------------

    def at(self, t: float, kind: str, *data) -> None:
        self.seq += 1
        heapq.heappush(self.events, (t, self.seq, kind, data))

    def run(self) -> RunResult:
        self.capacity.start(self.rng)
        for claim in self.s.claims:
            self.at(0.0, "launch", claim)
        end = math.inf
        handlers = {name: getattr(self, "_" + name)
                    for name in ("launch", "ready", "done", "notice", "kill", "loss",
                                 "consolidate")}
        events, pop = self.events, heapq.heappop
        while events:
            t, _, kind, data = pop(events)
            if t > MAX_SIMULATED_SECONDS:
                break
            self.now = t
            handlers[kind](*data)
            if self.remaining == 0:
                end = t
                break
        return self._result(end)

    def _launch(self, claim: Claim) -> None:
        s = self.s
        if s.strategy == "on-demand":
            self._node(claim, spot=False)
            return
        if self.now < self.ice_until:
            if s.strategy == "spot-first":
                self._fallback(claim)
            else:
                self.at(self.ice_until, "launch", claim)
            return
        interrupt_at = self.capacity.try_spot(self.now, claim, self.rng)
        if interrupt_at is None:
            self.launch_failures += 1
            self.ice_until = self.now + s.timing.ice_cache_seconds
            if s.strategy == "spot-first":
                self._fallback(claim)
            else:
                self.at(self.ice_until, "launch", claim)
            return
        self._spot_node(claim, interrupt_at)

    def _spot_node(self, claim: Claim, interrupt_at: float) -> _Node:
        node = self._node(claim, spot=True)
        node.interrupt_at = interrupt_at
        if interrupt_at < math.inf:
            if self.s.handling == "graceful":
                self.at(max(self.now, interrupt_at - self.s.timing.notice_seconds), "notice",
                        node.id)
            self.at(interrupt_at, "loss", node.id)
        return node

    def _fallback(self, claim: Claim) -> None:
        """An on-demand node for a spot-first claim; Karpenter's consolidation replaces it
        with spot once spot is back and the node has been settled for consolidateAfter."""
        node = self._node(claim, spot=False)
        t = self.s.timing
        self.at(self.now + t.launch_seconds + t.consolidate_after_seconds, "consolidate",
                node.id)

    def _consolidate(self, node_id: int) -> None:
        node = self.nodes[node_id]
        if node.state != "ready":
            return
        if self.now < self.ice_until:
            self.at(self.ice_until, "consolidate", node_id)
            return
        interrupt_at = self.capacity.try_spot(self.now, node.claim, self.rng)
        if interrupt_at is None:
            self.launch_failures += 1
            self.ice_until = self.now + self.s.timing.ice_cache_seconds
            self.at(self.ice_until, "consolidate", node_id)
            return
        replacement = self._spot_node(node.claim, interrupt_at)
        replacement.replaces = node_id

    def _node(self, claim: Claim, *, spot: bool) -> _Node:
        node = _Node(len(self.nodes), claim, spot, self.now)
        self.nodes.append(node)
        self.at(self.now + self.s.timing.launch_seconds, "ready", node.id)
        return node

    def _ready(self, node_id: int) -> None:
        node = self.nodes[node_id]
        if node.state != "launching":
            return
        node.state = "ready"
        node.ready = self.now
        for _ in range(node.claim.pods * self.s.slots_per_pod):
            slot = len(self.slot_node)
            self.slot_node.append(node_id)
            self.slot_unit.append(-1)
            self.slot_start.append(0.0)
            self.slot_token.append(0)
            node.slots.append(slot)
            self.idle.append(slot)
        if node.replaces is not None:  # consolidation: the on-demand node's pods move here
            old = self.nodes[node.replaces]
            if old.state == "ready":
                self.replacements += 1
                self._drain(old)
        self._dispatch()

    def _dispatch(self) -> None:
        idle, requeued, seconds = self.idle, self.requeued, self.s.unit_seconds
        total, now, events = len(seconds), self.now, self.events
        slot_unit, slot_start, slot_token = self.slot_unit, self.slot_start, self.slot_token
        while idle and (requeued or self.next_unit < total):
            slot = idle.popleft()
            if requeued and (self.next_unit >= total or requeued[0] < self.next_unit):
                unit = heapq.heappop(requeued)
            else:
                unit = self.next_unit
                self.next_unit += 1
            slot_unit[slot] = unit
            slot_start[slot] = now
            slot_token[slot] += 1
            self.seq += 1
            heapq.heappush(events, (now + seconds[unit], self.seq, "done",
                                    (slot, slot_token[slot])))

    def _done(self, slot: int, token: int) -> None:
        if self.slot_token[slot] != token or self.slot_unit[slot] < 0:
            return
        self.remaining -= 1
        node = self.nodes[self.slot_node[slot]]
        if node.state == "draining":
            self.slot_unit[slot] = -1
            if all(self.slot_unit[x] < 0 for x in node.slots):
                self._end(node, by_ec2=False)
            return
        # the slot takes the next unit at once (no slot is idle while units wait)
        requeued, total = self.requeued, len(self.s.unit_seconds)
        if requeued and (self.next_unit >= total or requeued[0] < self.next_unit):
            unit = heapq.heappop(requeued)
        elif self.next_unit < total:
            unit = self.next_unit
            self.next_unit += 1
        else:
            self.slot_unit[slot] = -1
            self.idle.append(slot)
            return
        self.slot_unit[slot] = unit
        self.slot_start[slot] = self.now
        token += 1
        self.slot_token[slot] = token
        self.seq += 1
        heapq.heappush(self.events, (self.now + self.s.unit_seconds[unit], self.seq, "done",
                                     (slot, token)))

    def _lose_units(self, node: _Node) -> None:
        lost, seconds = [], 0.0
        for slot in node.slots:
            unit = self.slot_unit[slot]
            if unit < 0:
                continue
            elapsed = self.now - self.slot_start[slot]
            seconds += elapsed
            lost.append(unit)
            self.slot_unit[slot] = -1
            self.slot_token[slot] += 1
            heapq.heappush(self.requeued, unit)
            self.losses_of[unit] += 1
            if self.losses_of[unit] > self.s.allowed_failures:
                self.failed = True
        if lost:
            self.rework += seconds
            self.redone += len(lost)
            self.losses.append(Loss(self.now, node.id, tuple(lost), seconds,
                                    len(self.s.unit_seconds) - self.remaining))

    def _retire_slots(self, node: _Node) -> None:
        gone = set(node.slots)
        if any(x in gone for x in self.idle):
            self.idle = deque(x for x in self.idle if x not in gone)

    def _notice(self, node_id: int) -> None:
        node = self.nodes[node_id]
        if node.state == "gone":
            return
        self.interruptions += 1
        if node.state == "launching":
            self._end(node, by_ec2=False)
            if node.replaces is not None:  # the pods never left their on-demand node
                self.at(self.now, "consolidate", node.replaces)
            else:
                self.at(self.now, "launch", node.claim)
            return
        self.at(self.now, "launch", node.claim)  # evicted pods are pending again
        self._drain(node)

    def _drain(self, node: _Node) -> None:
        """Pods evicted: no new unit; units in flight finish within the grace period."""
        node_id = node.id
        node.state = "draining"
        self._retire_slots(node)
        busy = [x for x in node.slots if self.slot_unit[x] >= 0]
        if not busy:
            self._end(node, by_ec2=False)
            return
        grace = self.s.timing.grace_seconds
        if any(self.slot_start[x] + self.s.unit_seconds[self.slot_unit[x]] > self.now + grace
               for x in busy):
            self.at(self.now + grace, "kill", node_id)

    def _kill(self, node_id: int) -> None:
        node = self.nodes[node_id]
        if node.state == "gone":
            return
        self._lose_units(node)
        self._end(node, by_ec2=False)
        self._dispatch()

    def _loss(self, node_id: int) -> None:
        node = self.nodes[node_id]
        if node.state == "gone":
            return
        if self.s.handling == "hard":
            self.interruptions += 1
            self.at(self.now, "launch", node.claim)
        self._lose_units(node)
        self._retire_slots(node)
        self._end(node, by_ec2=True)
        self._dispatch()

    def _end(self, node: _Node, *, by_ec2: bool) -> None:
        node.state = "gone"
        node.ended = self.now
        node.by_ec2 = by_ec2
        self._retire_slots(node)

    # -- the bill -----------------------------------------------------------------

    def _result(self, end: float) -> RunResult:
        s = self.s
        finished = end < math.inf
        if not finished:
            end = self.now
        volume = worker = spot_s = od_s = hours = 0.0
        for node in self.nodes:
            until = node.ended if node.ended is not None else \
                end + s.timing.consolidate_after_seconds
            seconds = max(0.0, until - node.launched)
            price = node.claim.spot_usd_per_hour if node.spot else node.claim.on_demand_usd_per_hour
            worker += pricing.instance_usd(price, seconds, spot=node.spot,
                                           interrupted_by_ec2=node.by_ec2)
            volume += s.root_volume.usd(seconds)
            hours += seconds / 3600
            if node.spot:
                spot_s += seconds
            else:
                od_s += seconds
        stable_seconds = end + s.timing.stable_consolidate_after_seconds
        stable = (pricing.instance_usd(s.stable_usd_per_hour, stable_seconds)
                  if s.stable_nodes else 0.0)
        volume += s.stable_nodes * s.root_volume.usd(stable_seconds)
        hours += s.stable_nodes * stable_seconds / 3600
        return RunResult(
            wall_seconds=end, usd=worker + stable + volume, worker_usd=worker,
            stable_usd=stable, volume_usd=volume, instance_hours=hours,
            spot_node_seconds=spot_s, on_demand_node_seconds=od_s,
            rework_cpu_seconds=self.rework, units_redone=self.redone,
            interruptions=self.interruptions, spot_launch_failures=self.launch_failures,
            replacements=self.replacements, failed=self.failed, finished=finished,
            losses=tuple(self.losses))


def simulate(scenario: Scenario, capacity: Capacity | None = None,
             rng: random.Random | None = None) -> RunResult:
    """One run; ``capacity`` None means no interruptions and capacity always found."""
    return _Run(scenario, capacity or NoInterruptions(), rng or random.Random(0)).run()


def run_seed(seed: int, index: int) -> random.Random:
    """The generator of run ``index`` of a seeded batch: independent of batch size."""
    return random.Random(f"tokenyard-cost-{seed}-{index}")
