"""Discrete-event simulation of Whisper pods on a GPU cluster: who gets a device when, and when each file is done.

One event heap (``heapq``), time in seconds. A pod's life:

1. **created**: by the submitter (the paper's kube-burner: one Job a second) or by Argo's DAG, which keeps at most
   ``parallelism`` transcribe pods in existence and creates the next when one ends;
2. **admitted** (with Kueue): its workload fits the ClusterQueue's quota (``kueue.py``) and the scheduling gate is
   removed ``KUEUE_ADMISSION_S`` later; without a queue every pod is schedulable at once;
3. **bound**: kube-scheduler finds a device (``cluster.py``). A pod that does not fit is parked as unschedulable
   with a back-off of 1, 2, 4 ... 10 s per failed attempt, and moved back when a device frees: at
   max(now, last attempt + back-off). This is how a crowd of pending pods competes for each freed GPU without
   a queue: the winner is whoever's back-off ends first, not the oldest;
4. **starting**: the node pulls the image once (pods on a node wait for the same pull), DAS creates the slice,
   weights are downloaded unless baked into the image, the process starts and loads the model;
5. **running**: its files are transcribed one after another (sequential engine) or together (batched engine:
   processor sharing, the shortest finishes first), at audio x RTF / speed on that device (``calibration.py``);
6. **done**: the device is released (a DAS slice is deleted first, its memory slices taken until then) and the
   quota returned. A preempted pod loses the file in progress; finished files are kept (kubescribe's markers).
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from dataclasses import dataclass, field

from workflows.capacity import defaults as D
from workflows.capacity.calibration import Calibration
from workflows.capacity.cluster import Cluster, Device
from workflows.capacity.kueue import ClusterQueue, Workload
from workflows.capacity.model import WHOLE, Inventory, PodSpec, QueueConfig, Slicing, WorkItem


@dataclass
class Segment:
    """One bar of the timeline: ``device`` held by ``pod`` in ``phase`` (pull, start, run, delete) from t0 to t1."""

    device: str
    gpu: int
    pod: str
    phase: str
    t0: float
    t1: float


@dataclass
class PodRecord:
    name: str
    model: str
    resource: str
    created: float
    admitted: float | None
    bound: float | None
    running: float | None
    done: float | None
    device: str | None
    evictions: int

    @property
    def jct(self) -> float:
        return (self.done or math.inf) - self.created


@dataclass
class SimResult:
    makespan: float
    pods: list[PodRecord]
    file_done: dict[str, float]  # transcript ready, seconds after the start
    timeline: list[Segment]
    gpu_seconds_held: float  # device-seconds x the share of a GPU the device takes (Device.held_share)
    gpus: int
    first_created: float

    @property
    def utilisation(self) -> float:
        return self.gpu_seconds_held / (self.gpus * self.makespan) if self.makespan > 0 else 0.0

    @property
    def mean_jct(self) -> float:
        return sum(p.jct for p in self.pods) / len(self.pods)


@dataclass
class _Pod:
    spec: PodSpec
    seq: int
    created: float = math.nan
    admitted: float | None = None
    schedulable: bool = False
    attempts: int = 0
    last_try: float = -math.inf
    bound: float | None = None
    running: float | None = None
    done: float | None = None
    device: Device | None = None
    version: int = 0
    evictions: int = 0
    item_done: dict[str, float] = field(default_factory=dict)
    plan: list[tuple[float, WorkItem]] = field(default_factory=list)


# Events at the same instant: capacity changes first, then admission, then scheduling attempts.
_RANK = {"freed": 0, "done": 0, "ready": 1, "create": 2, "admit": 3, "try": 4}


class Simulation:
    def __init__(self, inventory: Inventory, slicing: Slicing, queue: QueueConfig, cal: Calibration,
                 pods: list[PodSpec], *, parallelism: int | None = None, create_interval_s: float = 0.0,
                 start_s: float = 0.0, warm_nodes: bool = False, shuffle_seed: int | None = None):
        self.cal = cal
        self.cluster = Cluster(inventory, slicing)
        self.das = slicing.mode == "das"
        self.pods = [_Pod(p, i) for i, p in enumerate(pods)]
        self.by_name = {p.spec.name: p for p in self.pods}
        if len(self.by_name) != len(self.pods):
            raise ValueError("pod names must be unique")
        for p in self.pods:
            self._check_fits(p.spec)
        self.queue: ClusterQueue | None = None
        if queue.enabled:
            resources = {p.spec.resource for p in self.pods}
            quota = queue.quota if queue.quota is not None else {r: self.cluster.units(r) for r in resources}
            self.queue = ClusterQueue(quota, queue.strategy, queue.preemption)
        self.parallelism = parallelism
        self.create_interval_s = create_interval_s
        self.start_s = start_s
        self.image_ready: dict[int, float] = {n: -math.inf for n in set(self.cluster.node_of)} if warm_nodes else {}
        self.heap: list[tuple[float, int, int, int, str, object]] = []
        self.counter = itertools.count()
        self.unschedulable: set[str] = set()
        self.timeline: list[Segment] = []
        self.held = 0.0
        self.next_to_create = 0
        self.live = 0
        # Pods moved back to the scheduler at the same instant tie on kube-scheduler's queue timestamp; which of
        # them gets the freed device is then an implementation detail. None: oldest first; a seed: shuffled.
        self.shuffle = random.Random(shuffle_seed) if shuffle_seed is not None else None

    # --- set-up checks ----------------------------------------------------------------------------------------
    def _check_fits(self, spec: PodSpec) -> None:
        if not self.cluster.can_ever_fit(spec.resource):
            raise ValueError(f"{spec.name}: no {self.cluster.slicing.label()} device offers {spec.resource}")
        profile = self.cluster.profile_for(spec.resource)
        memory = self.cluster.inv.gpu.memory_gb if profile is None else profile.memory_gb
        if not self.cal.fits(spec.model, memory):
            raise ValueError(f"{spec.name}: Whisper {spec.model} needs more than the {memory:g} GB of "
                             f"{spec.resource if spec.resource != WHOLE else 'a ' + self.cluster.inv.gpu.name}")

    # --- event plumbing ---------------------------------------------------------------------------------------
    def _push(self, t: float, kind: str, payload: object, priority: int = 0) -> None:
        heapq.heappush(self.heap, (t, _RANK[kind], -priority, next(self.counter), kind, payload))

    def run(self) -> SimResult:
        self._create_more(self.start_s)
        while self.heap:
            t, _, _, _, kind, payload = heapq.heappop(self.heap)
            getattr(self, f"_on_{kind}")(t, payload)
        return self._result()

    def _create_more(self, now: float) -> None:
        """The submitter (every pod, one per ``create_interval_s``) or Argo (at most ``parallelism`` alive)."""
        while self.next_to_create < len(self.pods) and (self.parallelism is None or self.live < self.parallelism):
            pod = self.pods[self.next_to_create]
            at = now + (self.next_to_create * self.create_interval_s if self.parallelism is None else D.ARGO_POD_CREATE_S)
            self.next_to_create += 1
            self.live += 1
            self._push(at, "create", pod.spec.name)

    # --- handlers ----------------------------------------------------------------------------------------------
    def _on_create(self, t: float, name: str) -> None:
        pod = self.by_name[name]
        pod.created = t
        if self.queue is None:
            pod.schedulable = True
            self._push(t, "try", (name, pod.version), pod.spec.priority)
        else:
            self.queue.submit(Workload(name, pod.spec.resource, pod.spec.priority, t, pod.seq))
            self._push(t, "admit", None)

    def _on_admit(self, t: float, _: object) -> None:
        assert self.queue is not None
        admitted, evicted = self.queue.admit(t)
        for w in evicted:
            self._evict(self.by_name[w.name], t)
        for w in admitted:
            pod = self.by_name[w.name]
            pod.admitted = t
            pod.schedulable = True
            self._push(t + D.KUEUE_ADMISSION_S, "try", (w.name, pod.version), pod.spec.priority)

    def _on_try(self, t: float, payload: tuple[str, int]) -> None:
        name, version = payload
        pod = self.by_name[name]
        if version != pod.version or not pod.schedulable or pod.device is not None:
            return
        warm = {n for n, ready in self.image_ready.items() if ready <= t}
        device = self.cluster.bind(name, pod.spec.resource, warm)
        if device is None:
            pod.attempts += 1
            pod.last_try = t
            self.unschedulable.add(name)
            return
        pod.device, pod.bound = device, t
        self.unschedulable.discard(name)
        image_at = self.image_ready.get(device.node)
        if image_at is None:  # first pod on this node pulls the image; later ones wait for the same pull
            image_at = self.image_ready[device.node] = t + self.cal.pull_s()
        t_ready = max(t, image_at)
        if image_at > t:
            self._segment(device, name, "pull", t, image_at)
        start = (self.cal.das_create_s.value if self.das else 0.0) + self.cal.startup_s(pod.spec.model,
                                                                                         pod.spec.cached_weights)
        self._segment(device, name, "start", t_ready, t_ready + start)
        self._push(t_ready + start, "ready", (name, pod.version))

    def _on_ready(self, t: float, payload: tuple[str, int]) -> None:
        name, version = payload
        pod = self.by_name[name]
        if version != pod.version:
            return
        pod.running = t
        todo = [i for i in pod.spec.items if i.name not in pod.item_done]
        speed = self.cal.speed(pod.spec.model, pod.device.share, pod.spec.batched)
        rtf = self.cal.rtf(pod.spec.model) / speed
        pod.plan = _finish_times(todo, rtf, t, pod.spec.batched)
        end = max((f for f, _ in pod.plan), default=t)
        self._segment(pod.device, name, "run", t, end)
        self._push(end, "done", (name, pod.version))

    def _on_done(self, t: float, payload: tuple[str, int]) -> None:
        name, version = payload
        pod = self.by_name[name]
        if version != pod.version:
            return
        for f, item in pod.plan:
            pod.item_done[item.name] = f
        pod.done = t
        self._free(pod, t)
        self.live -= 1
        self._create_more(t)

    def _on_freed(self, t: float, device: Device) -> None:
        self.cluster.release(device)
        self._wake(t)

    # --- helpers -------------------------------------------------------------------------------------------------
    def _free(self, pod: _Pod, t: float) -> None:
        device, pod.device = pod.device, None
        assert device is not None and pod.bound is not None
        self.held += (t - pod.bound) * device.held_share
        if self.das:  # the slice is deleted before its memory slices can host another
            end = t + self.cal.das_delete_s.value
            self._segment(device, pod.spec.name, "delete", t, end)
            self.held += (end - t) * device.held_share
            self._push(end, "freed", device)
        else:
            self.cluster.release(device)
            self._wake(t)
        if self.queue is not None:
            if pod.spec.name in self.queue.admitted:
                self.queue.finish(pod.spec.name)
            self._push(t, "admit", None)

    def _evict(self, pod: _Pod, t: float) -> None:
        """Kueue preempted it: the pod is deleted (files finished so far are kept) and its workload requeued."""
        pod.version += 1
        pod.evictions += 1
        pod.schedulable = False
        pod.admitted = None
        self.unschedulable.discard(pod.spec.name)
        for f, item in pod.plan:
            if f <= t:
                pod.item_done[item.name] = f
        pod.plan = []
        if pod.device is not None:
            self.timeline = [s for s in self.timeline if not (s.pod == pod.spec.name and s.t0 >= t)]
            for s in self.timeline:
                if s.pod == pod.spec.name and s.t1 > t:
                    s.t1 = t
            device, pod.device = pod.device, None
            self.held += (t - (pod.bound or t)) * device.held_share
            if self.das:
                self._push(t + self.cal.das_delete_s.value, "freed", device)
            else:
                self.cluster.release(device)
                self._wake(t)

    def _wake(self, t: float) -> None:
        """A device freed: every unschedulable pod is retried once its back-off has passed."""
        names = sorted(self.unschedulable, key=lambda n: self.by_name[n].seq)
        if self.shuffle is not None:
            self.shuffle.shuffle(names)
        for name in names:
            pod = self.by_name[name]
            backoff = min(D.SCHED_INITIAL_BACKOFF_S * 2 ** (pod.attempts - 1), D.SCHED_MAX_BACKOFF_S)
            self._push(max(t, pod.last_try + backoff), "try", (name, pod.version), pod.spec.priority)
        self.unschedulable.clear()

    def _segment(self, device: Device, pod: str, phase: str, t0: float, t1: float) -> None:
        if t1 > t0:
            self.timeline.append(Segment(device.label(), device.gpu, pod, phase, t0, t1))

    def _result(self) -> SimResult:
        stuck = [p.spec.name for p in self.pods if p.done is None]
        if stuck:
            raise RuntimeError(f"simulation ended with pods that never ran: {stuck[:5]}")
        first = min(p.created for p in self.pods)
        records = [PodRecord(p.spec.name, p.spec.model, p.spec.resource, p.created - first,
                             None if p.admitted is None else p.admitted - first, p.bound - first,
                             p.running - first, p.done - first, None, p.evictions) for p in self.pods]
        files = {k: v - first for p in self.pods for k, v in p.item_done.items()}
        timeline = [Segment(s.device, s.gpu, s.pod, s.phase, s.t0 - first, s.t1 - first) for s in self.timeline]
        return SimResult(max(r.done for r in records), records, files, timeline, self.held,
                         self.cluster.inv.count, first)


def _finish_times(items: list[WorkItem], rtf: float, t0: float, batched: bool) -> list[tuple[float, WorkItem]]:
    """When each file of a pod is done: one after another, or (batched) all at once sharing the device equally."""
    if not batched:
        out, t = [], t0
        for item in items:
            t += item.audio_s * rtf
            out.append((t, item))
        return out
    out, t, done_work = [], t0, 0.0
    remaining = sorted(items, key=lambda i: i.audio_s)
    n = len(remaining)
    for k, item in enumerate(remaining):  # processor sharing: n-k files share the speed until the next ends
        t += (item.audio_s - done_work) * rtf * (n - k)
        done_work = item.audio_s
        out.append((t, item))
    return out


def simulate(inventory: Inventory, slicing: Slicing, queue: QueueConfig, cal: Calibration, pods: list[PodSpec],
             **kw: object) -> SimResult:
    return Simulation(inventory, slicing, queue, cal, pods, **kw).run()  # type: ignore[arg-type]


def file_seconds(files: list[WorkItem], model: str, cal: Calibration, share: float, batched: bool) -> list[float]:
    """Seconds each file takes alone on a device of ``share`` of a GPU."""
    rtf = cal.rtf(model) / cal.speed(model, share, batched)
    return [f.audio_s * rtf for f in files]


def lower_bound(files: list[WorkItem], model: str, cal: Calibration, devices: int, share: float, batched: bool) -> float:
    """max(total work / capacity, longest file) on ``devices`` devices of ``share`` of a GPU each: perfect packing,
    no start-up, no queue."""
    seconds = file_seconds(files, model, cal, share, batched)
    return max(sum(seconds) / devices, max(seconds))
