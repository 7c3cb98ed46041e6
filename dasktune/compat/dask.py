"""Inside distributed: a worker's threads and resources, preloads, the span dasktune's tasks
run in, who holds a task's result, and the scheduler dashboard's pages."""

from __future__ import annotations

from collections.abc import Iterator
import contextlib
import sys
from typing import Any
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from distributed import Client
    from distributed import Scheduler
    from distributed import Worker


def worker_threads_and_resources(worker: Worker) -> tuple[int, dict[str, float]]:
    """A worker's threads and the resources it advertises, as its ``WorkerState`` holds
    them (``Worker.nthreads`` and ``Worker.total_resources`` are deprecated aliases)."""
    return worker.state.nthreads, dict(worker.state.total_resources)


def imported_as_preload() -> bool:
    """Whether distributed is importing ``dasktune`` right now as a preload module
    (``dask scheduler --preload dasktune``).

    Bokeh apps can be added to a scheduler's dashboard only before it starts, and a
    scheduler imports its preloads just before that (``dask scheduler`` even earlier, when
    it checks its options), but calls their ``dask_setup`` after; distributed passes no hint
    to the import itself. So the import looks for ``distributed.preloading`` on the stack.
    (A worker's preload would add the app to a dashboard it does not serve: harmless.)
    """
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_globals.get("__name__") == "distributed.preloading":
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


#: The Dask span every dasktune task is computed in, for as long as the scheduler runs.
SPAN_ID = "dasktune"


@contextlib.contextmanager
def dasktune_span() -> Iterator[None]:
    """Tasks submitted inside are computed in the one span ``dasktune`` (its id fixed), unless
    the caller is already in a span of their own (``distributed.span``), which they keep.

    Dask puts every computation outside a span in a new ``default`` span and keeps each span,
    and the task groups it refers to, for the scheduler's lifetime (dask/distributed#7977):
    about 2 KiB for every ``optimize`` run, on a scheduler that runs for months. One fixed
    span instead is one record, which :func:`forget_released_groups` keeps small, and it
    shows dasktune's work as one line in the dashboard's fine performance metrics.
    ``distributed.span`` always makes a new id, so the annotation is written as it writes it
    (``{"name": tags, "ids": ids}``; no public way to reuse an id)."""
    from dask.base import annotate
    from dask.base import get_annotations

    if "span" in get_annotations():
        yield
        return
    with annotate(span={"name": (SPAN_ID,), "ids": (SPAN_ID,)}):
        yield


def forget_released_groups(scheduler: Scheduler) -> int:
    """Let the ``dasktune`` span (:func:`dasktune_span`) drop the task groups the scheduler
    has forgotten (the tasks of ended runs); how many it dropped.

    A span keeps every task group it was given, for its totals; those of a run that ended
    are of no further use, and kept they would grow the span with every run. The span's
    cumulative worker metrics (what the dashboard shows) are kept apart from the groups and
    stay. ``SpansSchedulerExtension.spans`` and ``Span.groups`` are not public."""
    extension = scheduler.extensions.get("spans")
    span = extension.spans.get(SPAN_ID) if extension is not None else None
    if span is None:
        return 0
    live = {group for group in span.groups if scheduler.task_groups.get(group.name) is group}
    dropped = len(span.groups) - len(live)
    if dropped:
        span.groups = live
    return dropped


def results_held(client: Client, keys: list[str]) -> list[str]:
    """Those of the task ``keys`` whose results a worker holds, as the scheduler sees them
    now (its ``who_has`` handler). ``Client.who_has`` takes futures only, and a future kept
    to ask about its task would keep the result it asks about."""
    from distributed.utils import sync

    scheduler, loop = client.scheduler, client.loop
    assert scheduler is not None and loop is not None, "a running client has both"

    async def ask() -> Any:
        return await scheduler.who_has(keys=keys)

    held: dict[str, list[str]] = sync(loop, ask)
    return [key for key, workers in held.items() if workers]


def dashboard_variables(scheduler: Scheduler) -> dict[str, Any]:
    """What every page of ``scheduler``'s dashboard renders its frame with: ``pages`` (the
    navigation bar), ``plots`` (its "More..." menu), ``jupyter``.

    distributed computes them once per scheduler (``template_variables`` in
    ``distributed/dashboard/scheduler.py`` is memoized) and its pages share these very lists;
    there is no public accessor.
    """
    from distributed.dashboard.scheduler import template_variables

    variables: dict[str, Any] = template_variables(scheduler)
    return variables


def add_dashboard_page(scheduler: Scheduler, page: str, replaces_plot: str | None = None) -> None:
    """Add ``page`` (a path relative to the dashboard's root) to the navigation bar of
    ``scheduler``'s dashboard, and point the "More..." entry of the Bokeh app
    ``replaces_plot`` (e.g. ``"individual-tuning"``) at it, so that both open one page.

    Changing :func:`dashboard_variables` in place changes every page served from now on:
    distributed has no public way to add a page to its bar.
    """
    variables = dashboard_variables(scheduler)
    if page not in variables["pages"]:
        variables["pages"].append(page)
    for plot in variables["plots"]:
        if plot["url"] == replaces_plot:
            plot["url"] = page


def dashboard_templates() -> str:
    """The directory of distributed's Jinja2 templates of the dashboard: ``base.html`` is the
    navigation bar and page frame every dashboard page has. Its Tornado handlers find them
    through ``RequestHandler.get_template_path()``; its Bokeh pages load them with a Jinja2
    environment of their own, as dasktune's pages do. Not a public API of distributed."""
    from distributed.http.utils import RequestHandler

    path: str = RequestHandler.get_template_path(None)  # type: ignore[arg-type]  # no state used
    return path
