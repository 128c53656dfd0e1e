"""Ray backend: one actor per worker slot, each holding the job (set up once) and running one item at a time."""

from __future__ import annotations

import logging
import os
from collections import deque

from .core import CrashLedger, ItemResult, Job, RunnerOptions, WorkerState, WorkItem, describe_exception, worker_died_result
from .local import pickle_job
from .summary import ResultCollector

logger = logging.getLogger(__name__)


def import_ray():
    """Import ray lazily: it is an optional dependency."""
    try:
        import ray
    except ImportError as exc:
        raise ImportError("the Ray backend needs ray: pip install 'matseg[ray]'") from exc
    return ray


class _ItemWorker:
    """Body of the Ray actor (wrapped with ``ray.remote`` at run time, so this module imports without ray)."""

    def __init__(self, job_blob: bytes):
        self.state = WorkerState.for_worker_process(job_blob)

    def run(self, item: WorkItem, retries: int) -> ItemResult:
        return self.state.run(item, retries)


def _alive_nodes(ray) -> int:
    return sum(1 for node in ray.nodes() if node.get("Alive"))


def run_ray(job: Job, items: list[WorkItem], options: RunnerOptions, collector: ResultCollector) -> None:
    """Run items on Ray actors; same results as the local backends.

    Connects to ``options.ray_address`` (or ``$RAY_ADDRESS``) if given, else starts a private local
    instance with ``options.workers`` CPUs. Only a Ray instance started here is shut down here.
    One actor per worker (``options.workers``, or every cluster CPU when None) with one item in
    flight each, so a dead actor identifies its item; actors are replaced after
    ``options.max_items_per_worker`` items and after a crash.
    """
    ray = import_ray()
    from ray.exceptions import RayActorError

    started = False
    if not ray.is_initialized():
        address = options.ray_address or os.environ.get("RAY_ADDRESS") or None
        if address:
            ray.init(address=address)
        else:
            # "local" rather than None: never attach by surprise to a cluster left by `ray start`.
            ray.init(address="local", num_cpus=options.workers or None, include_dashboard=False, log_to_driver=False)
        started = True

    actors: list = []
    try:
        workers = options.workers or int(ray.cluster_resources().get("CPU", 1))
        workers = max(1, min(workers, len(items)))
        collector.workers = workers
        actor_cls = ray.remote(num_cpus=1, max_restarts=0)(_ItemWorker)
        # cloudpickle: also ships jobs whose classes Ray workers could not import by name.
        blob_ref = ray.put(pickle_job(job, dumps=ray.cloudpickle.dumps))

        actors = [actor_cls.remote(blob_ref) for _ in range(workers)]
        served = [0] * workers
        queue = deque(items)
        ledger = CrashLedger(options.retries)
        pending: dict = {}  # ObjectRef -> (slot, item)

        def replace(slot: int) -> None:
            ray.kill(actors[slot])
            actors[slot] = actor_cls.remote(blob_ref)
            served[slot] = 0

        retired: set[int] = set()
        nodes_alive = [_alive_nodes(ray)]

        def node_lost() -> bool:
            """Whether a node left the cluster since the last look (an actor death is then not
            the item's fault and does not count against its retries)."""
            now = _alive_nodes(ray)
            lost = now < nodes_alive[0]
            nodes_alive[0] = now
            return lost

        def replace_or_retire(slot: int) -> None:
            """Replace a dead actor, or retire its slot when the cluster no longer has a CPU for
            it (so no item waits on an actor that cannot be placed); one slot always stays."""
            live = workers - len(retired)
            cpus = int(ray.cluster_resources().get("CPU", 0))
            if live > max(1, cpus):
                ray.kill(actors[slot])
                retired.add(slot)
                logger.warning("Ray cluster down to %d CPU(s): continuing with %d worker(s)", cpus, live - 1)
            else:
                replace(slot)

        idle = deque(range(workers))
        while queue or pending:
            while queue and idle:
                slot = idle.popleft()
                item = queue.popleft()
                pending[actors[slot].run.remote(item, options.retries)] = (slot, item)
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                slot, item = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except RayActorError as exc:
                    replace_or_retire(slot)
                    if node_lost():
                        logger.warning("a Ray node left while running item %s; running it elsewhere", item.name)
                        queue.appendleft(item)
                    elif ledger.should_retry(item):
                        logger.warning("Ray actor died running item %s; retrying it", item.name)
                        queue.appendleft(item)
                    else:
                        collector.add(worker_died_result(item, f"Ray {type(exc).__name__}", ledger.crashes(item)))
                except Exception as exc:
                    collector.add(ItemResult(item.name, "failed", 0.0, reason=f"result not received: {describe_exception(exc)}"))
                else:
                    collector.add(result)
                    served[slot] += 1
                    if options.max_items_per_worker and served[slot] >= options.max_items_per_worker:
                        replace(slot)
                if slot not in retired:
                    idle.append(slot)
            collector.raise_if_aborted()  # the finally below kills every actor, running items too
    finally:
        for actor in actors:
            ray.kill(actor)
        if started:
            ray.shutdown()
