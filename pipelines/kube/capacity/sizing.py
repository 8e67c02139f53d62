"""From a pod's CPUs and memory to a CPU:memory class and requests a node can allocate.

A node never gives pods all of its memory: kubelet, the system and eviction thresholds
keep some, and every node runs a few DaemonSets. A 4-vCPU m-family node has 16 GiB but
allocates about 13.8 GiB. So a worker that asks for "4 CPUs, 16 GiB" is put in the 4 GiB
per vCPU class and its requests are sized to what a 4-vCPU node of that class can really
hold after DaemonSets; asking for the raw 16 GiB would leave it Pending or push it onto
an 8-vCPU node with half the node wasted.

A Dask worker is one single-threaded process on one core (``size_core_worker``): it
requests a whole CPU, so no node runs more workers than it allocates whole cores, and
its memory is the share of one such core on every node of its class, so memory never
keeps a node's cores idle.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from pipelines.errors import ProfileFitError
from pipelines.kube.capacity.instances import InstanceType
from pipelines.kube.capacity.pools import (CLASSES, MIN_INSTANCE_TYPES, MemoryClass, NodePoolDef,
                                           class_pool)
from pipelines.kube.capacity.quantity import GIB, format_cpu, gib

#: what the DaemonSets on every node request (aws-node, kube-proxy, eks-pod-identity-agent,
#: ebs-csi-node and a log or metrics agent): kept free on each node when sizing
DAEMONSET_CPU_M = 250
DAEMONSET_MEMORY_BYTES = 512 * 2**20


@dataclass(frozen=True)
class PodSize:
    """Requests and limits for one pod, and the nodes that can hold it."""

    pool: NodePoolDef
    memory_class: MemoryClass | None
    #: CPUs the process may use (threads, task slots); the CPU limit
    cpus: int
    cpu_request_m: int
    memory_bytes: int
    #: the node shape the pod was sized against (its vCPU count)
    node_vcpu: int
    #: every instance type of the pool that can hold one such pod
    fits_on: tuple[InstanceType, ...]
    #: the memory asked for, before sizing to allocatable
    asked_memory_bytes: int
    #: sized as one core's share of the class's nodes (``size_core_worker``)
    per_core: bool = False

    @property
    def cpu_limit_m(self) -> int:
        return max(self.cpus * 1000, self.cpu_request_m)

    @property
    def shrunk(self) -> bool:
        return self.memory_bytes < self.asked_memory_bytes

    def describe(self) -> str:
        text = (f"{format_cpu(self.cpu_request_m)} CPU, {gib(self.memory_bytes)} on "
                f"{self.pool.name} nodes ({len(self.fits_on)} instance types)")
        if self.shrunk and self.per_core:
            text += (f"; memory sized down from {gib(self.asked_memory_bytes)} to one core's "
                     "share of every node of the class")
        elif self.shrunk:
            text += (f"; memory sized down from {gib(self.asked_memory_bytes)} to what a "
                     f"{self.node_vcpu}-vCPU node allocates")
        return text


def choose_class(cpus: float, memory_bytes: int, *, what: str, source: str | None = None
                 ) -> MemoryClass:
    """The smallest class whose GiB per vCPU covers ``memory_bytes / cpus``."""
    ratio = memory_bytes / GIB / cpus
    for cls in CLASSES:
        if ratio <= cls.gib_per_cpu + 1e-9:
            return cls
    top = CLASSES[-1]
    classes = ", ".join(str(c.gib_per_cpu) for c in CLASSES)
    raise ProfileFitError(
        f"{what} asks for {gib(memory_bytes)} with {cpus:g} CPUs, {ratio:.1f} GiB per vCPU; "
        f"the CPU:memory classes are {classes} GiB per vCPU, so it fits no class.",
        source=source, cpus=cpus, memory_bytes=memory_bytes,
        fits=[f"at most {top.gib_per_cpu * cpus:g} GiB with {cpus:g} CPUs",
              f"at least {math.ceil(memory_bytes / GIB / top.gib_per_cpu)} CPUs for "
              f"{gib(memory_bytes)}"],
        max_memory_bytes=int(top.gib_per_cpu * cpus * GIB),
        min_cpus=math.ceil(memory_bytes / GIB / top.gib_per_cpu))


def _holds(instance: InstanceType, cpu_m: int, memory_bytes: int) -> bool:
    return (instance.alloc_cpu_m - DAEMONSET_CPU_M >= cpu_m
            and instance.alloc_memory_bytes - DAEMONSET_MEMORY_BYTES >= memory_bytes)


def size_pod(cpus: int, memory_bytes: int, pool: NodePoolDef, *, memory_class: MemoryClass | None,
             shrink_memory: bool, what: str, source: str | None = None) -> PodSize:
    """Requests for a pod of ``cpus`` and ``memory_bytes`` on ``pool``'s nodes.

    CPU requests always leave room for the kubelet and DaemonSets of the smallest node
    with ``cpus`` vCPUs that can hold the pod. Memory is sized down to what that node
    allocates when ``shrink_memory`` (a Dask worker takes what it is given); otherwise it
    is kept, exactly as asked, and must fit enough instance types of the pool (a Spark
    executor's memory is its JVM heap plus overheads, set in Spark's own configuration;
    a scheduler needs what it asked for).
    """
    candidates = pool.instance_types()
    shapes = sorted({i.vcpu for i in candidates if i.vcpu >= cpus})
    if not shapes:
        largest = max(i.vcpu for i in candidates)
        raise ProfileFitError(
            f"{what} asks for {cpus} CPUs; the largest node of the {pool.name} pool has "
            f"{largest} vCPUs, so no instance type of its class can hold it.",
            source=source, cpus=cpus, memory_bytes=memory_bytes,
            fits=[f"at most {largest} CPUs per pod, and more pods"], max_cpus=largest)
    if not shrink_memory:  # the smallest shape on which the memory fits at all
        holding = [v for v in shapes if any(
            i.alloc_memory_bytes - DAEMONSET_MEMORY_BYTES >= memory_bytes
            for i in candidates if i.vcpu == v)]
        shapes = holding or shapes
    node_vcpu = shapes[0]
    same_shape = [i for i in candidates if i.vcpu == node_vcpu]
    slice_cpu = min(i.alloc_cpu_m for i in same_shape) - DAEMONSET_CPU_M
    slice_memory = min(i.alloc_memory_bytes for i in same_shape) - DAEMONSET_MEMORY_BYTES
    cpu_request = min(cpus * 1000, slice_cpu)
    memory = min(memory_bytes, slice_memory) if shrink_memory else memory_bytes
    memory -= memory % 2**20
    fits_on = tuple(i for i in candidates if _holds(i, cpu_request, memory))
    if len(fits_on) < MIN_INSTANCE_TYPES:
        # the most memory that enough instance types can hold next to this CPU request
        rooms = sorted((i.alloc_memory_bytes - DAEMONSET_MEMORY_BYTES for i in candidates
                        if i.alloc_cpu_m - DAEMONSET_CPU_M >= cpu_request), reverse=True)
        room = rooms[MIN_INSTANCE_TYPES - 1] if len(rooms) >= MIN_INSTANCE_TYPES else 0
        room -= room % 2**20
        raise ProfileFitError(
            f"{what} needs {format_cpu(cpu_request)} CPU and {gib(memory)}; only "
            f"{len(fits_on)} instance type(s) of the {pool.name} pool can allocate that, and "
            f"the pool asks for at least {MIN_INSTANCE_TYPES} to choose spot capacity from.",
            source=source, cpus=cpus, memory_bytes=memory,
            fits=[f"at most {room // 2**20} MiB with {cpus} CPUs"] if room > 0 else [],
            max_memory_bytes=room or None)
    return PodSize(pool=pool, memory_class=memory_class, cpus=cpus, cpu_request_m=cpu_request,
                   memory_bytes=memory, node_vcpu=node_vcpu, fits_on=fits_on,
                   asked_memory_bytes=memory_bytes)


def size_worker(cpus: int, memory_bytes: int, *, what: str, shrink_memory: bool = True,
                source: str | None = None) -> PodSize:
    """A worker or executor: choose its class, then size it to that class's nodes.

    When no node of the smallest class that covers its memory per CPU can hold it (a
    64-CPU pod of 110 GiB on a 2 GiB/vCPU class whose largest nodes allocate less), the
    next class with more memory per CPU is tried before giving up.
    """
    cls = choose_class(cpus, memory_bytes, what=what, source=source)
    first: ProfileFitError | None = None
    for candidate in CLASSES[CLASSES.index(cls):]:
        try:
            return size_pod(cpus, memory_bytes, class_pool(candidate), memory_class=candidate,
                            shrink_memory=shrink_memory, what=what, source=source)
        except ProfileFitError as err:
            first = first or err
    assert first is not None
    raise first


def size_core_worker(memory_bytes: int, *, what: str, source: str | None = None) -> PodSize:
    """A one-CPU worker that owns its core: one single-threaded process per core.

    It requests a whole CPU (request = limit = 1), so a node holds at most as many such
    workers as it allocates whole cores after DaemonSets (15 on a 16-vCPU node; none on
    a 1-vCPU node, which allocates less than one). Memory is sized down to the smallest
    per-core share over the class's instance types (allocatable memory after DaemonSets
    divided by the workers the node holds), so every node fills all its worker slots.
    """
    try:
        cls = choose_class(1, memory_bytes, what=what, source=source)
    except ProfileFitError as err:  # more CPUs is not a way out for a one-core worker
        raise ProfileFitError(err.message, source=source, cpus=1, memory_bytes=memory_bytes,
                              fits=[f"at most {CLASSES[-1].gib_per_cpu:g} GiB per worker"],
                              max_memory_bytes=CLASSES[-1].gib_per_cpu * GIB) from None
    pool = class_pool(cls)
    cpu_request = 1000
    shares: list[tuple[int, InstanceType]] = []
    for instance in pool.instance_types():
        slots = (instance.alloc_cpu_m - DAEMONSET_CPU_M) // cpu_request
        if slots >= 1:
            shares.append(((instance.alloc_memory_bytes - DAEMONSET_MEMORY_BYTES) // slots,
                           instance))
    if len(shares) < MIN_INSTANCE_TYPES:
        raise ProfileFitError(
            f"{what} needs a whole CPU; only {len(shares)} instance type(s) of the "
            f"{pool.name} pool allocate that, and the pool asks for at least "
            f"{MIN_INSTANCE_TYPES} to choose spot capacity from.",
            source=source, cpus=1, memory_bytes=memory_bytes)
    share, smallest = min(shares, key=lambda s: s[0])
    memory = min(memory_bytes, share)
    memory -= memory % 2**20
    fits_on = tuple(i for _, i in shares)
    return PodSize(pool=pool, memory_class=cls, cpus=1, cpu_request_m=cpu_request,
                   memory_bytes=memory, node_vcpu=smallest.vcpu, fits_on=fits_on,
                   asked_memory_bytes=memory_bytes, per_core=True)


def sized(role: str, size: Callable[[], PodSize]) -> PodSize:
    """``size()``, with a :class:`ProfileFitError` told which pod (``role``) did not fit."""
    try:
        return size()
    except ProfileFitError as err:
        err.role = role
        raise
