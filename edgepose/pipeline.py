"""Pipeline: N :class:`~edgepose.estimator.PoseEstimator` workers over a stream of frames,
results in input order.

Threads (the backends' C calls and the native kernels release the GIL, so threads overlap):

* a reader pulls frames from the source into a small waiting queue. A file source waits
  when the queue is full (nothing is ever dropped); a live source drops the oldest waiting
  frame instead and counts it, so what is processed never lags behind the camera;
* ``workers`` threads, each with its own estimator (backends are not thread-safe), take the
  waiting frames in order, find the person boxes (user boxes, the detector, or boxes
  propagated from the poses of an earlier frame), run the estimator and file the result under
  the frame's sequence number;
* the caller of :meth:`Pipeline.run` gets the results strictly in sequence order (a reorder
  buffer) and the tracker, which is sequential state, is updated there, in order.

At most ``workers + queue_size`` frames are taken and not yet handed back, and at most
``queue_size`` wait unread by a worker, so memory stays flat however fast the source is.

Box propagation (a detector together with a tracker) makes frame ``i`` depend on the poses of
an earlier frame. The pipeline uses the tracked poses of frame ``i - workers``: with one
worker that is the previous frame (exactly the sequential behaviour), with more it is a fixed,
reproducible lag of ``workers`` frames rather than "whatever finished last".
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Deque, Dict, Iterable, Iterator, List, Optional, Tuple, Union

import numpy as np

from .backends import Backend, BackendError, choose_backend
from .board import board_npu_cores, soc_npu_cores
from .boxes import BoxSource, Detector
from .estimator import PoseEstimator, Poses
from .metadata import MetadataError
from .tracking import PERSON_THR, BoxPlan, PoseTracker, Propagation, merge_boxes, person_filter

log = logging.getLogger("edgepose.pipeline")

POLL_S = 0.05  # how often blocked threads look at the stop flag
STOP_GRACE_S = 0.5  # how long a stop waits for frames already being estimated


@dataclass
class FrameResult:
    """One frame's outcome.

    Attributes:
        index: the source's frame number (0-based; counts dropped frames, so a live source's
            numbers have gaps where frames were dropped).
        seq: position among the frames processed (0, 1, 2, ... without gaps).
        frame: the BGR frame (the caller may draw on it).
        poses: the :class:`~edgepose.estimator.Poses` (empty when ``error`` is set), with
            track ids when the pipeline has a tracker.
        timings: per-stage milliseconds: ``capture`` (reading the frame), ``boxes``
            (detector / box propagation), ``warp``, ``infer``, ``decode``, ``nms`` (the
            estimator's ``last_timings``) and ``track``.
        tag: what came with the frame from the source (e.g. its media time), or None.
        error: one line when the detector or the estimator failed on this frame, else None.
        worker: the worker that estimated it.
        latency_ms: from the frame leaving the source to the result being handed back.

    It also unpacks as ``index, poses, timings = result``.
    """

    index: int
    seq: int
    frame: np.ndarray
    poses: Poses
    timings: Dict[str, float]
    tag: Any = None
    error: Optional[str] = None
    worker: int = -1
    latency_ms: float = 0.0

    def __iter__(self) -> Iterator[Any]:
        return iter((self.index, self.poses, self.timings))


@dataclass
class _Job:
    index: int
    frame: np.ndarray
    tag: Any
    t_read: float
    capture_ms: float
    seq: int = -1


class _Abandoned(Exception):
    """The run stopped while a worker waited on an earlier frame."""


@dataclass
class _RunState:
    """Everything the threads of one :meth:`Pipeline.run` share, guarded by ``cond``."""

    capacity: int  # waiting frames
    max_in_flight: int
    live: bool
    cond: threading.Condition = field(default_factory=threading.Condition)
    waiting: Deque[_Job] = field(default_factory=deque)
    results: Dict[int, Tuple[FrameResult, float, Optional[BoxPlan]]] = field(default_factory=dict)  # seq -> ...
    snapshots: Dict[int, Propagation] = field(default_factory=dict)
    next_seq: int = 0  # the next sequence number a worker takes
    next_out: int = 0  # the next sequence number handed back
    dropped: int = 0
    read: int = 0
    source_done: bool = False
    source_error: Optional[BaseException] = None

    @property
    def in_flight(self) -> int:
        return self.next_seq - self.next_out


def _split_item(item: Any) -> Tuple[np.ndarray, Any]:
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], np.ndarray):
        return item[0], item[1]
    return item, None


class _LockedDetector:
    """Serialises calls to a detector that is not declared thread-safe."""

    def __init__(self, detector: Detector) -> None:
        self.detector = detector
        self._lock = threading.Lock()

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        with self._lock:
            return self.detector(frame)


def npu_core_count(model_path: Union[str, Path, None] = None, compatible: Optional[Union[str, Path]] = None) -> int:
    """NPU cores to spread workers over: the board's (device tree), else the target SoC the
    ``.rknn`` model's sidecar names, else 1."""
    cores = board_npu_cores() if compatible is None else board_npu_cores(compatible)
    if cores == 0 and model_path is not None and Path(model_path).suffix.lower() == ".rknn":
        from .metadata import read_sidecar

        try:
            cores = soc_npu_cores(read_sidecar(model_path).target)
        except (MetadataError, OSError, ValueError):
            cores = 0
    return max(cores, 1)


def auto_workers(model_path: Union[str, Path], backend: str = "auto", compatible: Optional[Union[str, Path]] = None,
                 rknnlite_cls: Optional[type] = None) -> int:
    """``workers="auto"``: one worker per NPU core of the board for the rknnlite backend (a
    ``rknnlite_cls`` double counts as rknnlite), 1 otherwise (onnxruntime already spreads one
    inference over the CPU cores)."""
    if rknnlite_cls is None:
        try:
            if choose_backend(model_path, backend) != "rknnlite":
                return 1
        except (ValueError, BackendError):
            return 1
    cores = board_npu_cores() if compatible is None else board_npu_cores(compatible)
    return max(cores, 1)


class Pipeline:
    """Pose estimation over a stream of frames with ``workers`` estimators in flight.

    Args:
        model_path: as for :class:`~edgepose.estimator.PoseEstimator`.
        workers: number of estimators (threads), or ``"auto"`` (:func:`auto_workers`).
        detector: a :class:`~edgepose.boxes.Detector`; it runs on the workers. Calls are
            serialised with a lock unless the detector has ``thread_safe = True``.
        flip_test, backend: as for the estimator (``backend`` must be a name, not a loaded
            backend, when ``workers > 1``).
        boxes: user boxes, fixed ``(N, 4|5)`` or ``{frame index: boxes}`` (not with ``detector``).
        tracker: a :class:`~edgepose.tracking.PoseTracker`, updated in frame order; with a
            detector its ``detect_every`` and box propagation apply (see the module notes).
            May also be set as ``pipeline.tracker`` before :meth:`run`.
        queue_size: frames waiting for a worker (default 2 for files, 1 for a live source).
        npu_cores: cores to pin rknnlite workers over (default :func:`npu_core_count`).
        on_error: called with each failed :class:`FrameResult` (default: one log warning).
        person_thr: without a tracker, persons whose evidence (the larger of the person score
            and the box score) is below it are not reported; with a tracker, the tracker's
            ``person_thr`` decides (:mod:`edgepose.tracking`).
        options: the rest of the estimator's options (``refine``, ``nms_thr``, ``vis_thr``) and
            the backend's (``threads``; ``core_mask``, ``rknnlite_cls``).

    With rknnlite and ``workers > 1``, worker ``i`` runs on NPU core ``i % npu_cores`` unless a
    ``core_mask`` other than ``"auto"`` is given (then every worker uses that mask).

    Raises:
        the estimator's errors at load; a worker other than the first that fails to load
        raises the same error type, its message starting ``worker i (NPU core c)``.
    """

    def __init__(
        self,
        model_path: Union[str, Path],
        workers: Union[int, str] = 1,
        detector: Optional[Detector] = None,
        flip_test: bool = False,
        backend: Union[str, Backend] = "auto",
        *,
        boxes: Any = None,
        tracker: Optional[PoseTracker] = None,
        queue_size: Optional[int] = None,
        npu_cores: Optional[int] = None,
        on_error: Optional[Callable[[FrameResult], None]] = None,
        person_thr: float = PERSON_THR,
        **options: Any,
    ) -> None:
        if workers == "auto":
            if isinstance(backend, Backend):
                workers = 1
            else:
                workers = auto_workers(model_path, backend, rknnlite_cls=options.get("rknnlite_cls"))
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers: expected an integer >= 1 or 'auto', got {workers!r}")
        if isinstance(backend, Backend) and workers > 1:
            raise ValueError("backend: a loaded backend serves one worker; give a backend name for workers > 1")
        if queue_size is not None and queue_size < 1:
            raise ValueError(f"queue_size: must be >= 1, got {queue_size}")
        self._state: Optional[_RunState] = None
        self._stop = False
        self._stop_at = 0.0  # time.monotonic() of the stop request
        self._threads: List[threading.Thread] = []
        self._lock = threading.Lock()
        self.model_path = Path(model_path)
        self.workers = int(workers)
        self.queue_size = queue_size
        self.tracker = tracker
        self.on_error = on_error
        if not 0.0 <= float(person_thr) <= 1.0:
            raise ValueError(f"person_thr: must be in [0, 1], got {person_thr}")
        self.person_thr = float(person_thr)
        if detector is not None and not getattr(detector, "thread_safe", False):
            detector = _LockedDetector(detector)
        self.boxes = BoxSource(boxes, detector)
        self.detector = detector
        masks = self._core_masks(backend, npu_cores, options)
        self.core_masks = masks
        self.estimators: List[PoseEstimator] = []
        try:
            for i in range(self.workers):
                opts = dict(options)
                if masks is not None:
                    opts["core_mask"] = masks[i]
                try:
                    self.estimators.append(PoseEstimator(model_path, backend=backend, flip_test=flip_test, **opts))
                except (BackendError, MetadataError, ValueError, OSError) as exc:
                    if i == 0 and masks is None:
                        raise
                    where = f"worker {i} (NPU core {masks[i]})" if masks is not None else f"worker {i}"
                    raise type(exc)(f"{where}: {exc}") from None
        except BaseException:
            self.close()
            raise
        first = self.estimators[0]
        self.meta = first.meta
        self.keypoint_set = first.keypoint_set
        self.sigmas = first.sigmas

    def _core_masks(self, backend: Union[str, Backend], npu_cores: Optional[int], options: Dict[str, Any]):
        """One core mask per worker when rknnlite workers are to be pinned, else None."""
        if self.workers < 2 or isinstance(backend, Backend):
            return None
        if "rknnlite_cls" not in options:
            try:
                if choose_backend(self.model_path, backend) != "rknnlite":
                    return None
            except (ValueError, BackendError):
                return None  # the estimator reports it with its own message
        if str(options.get("core_mask", "auto")).lower() != "auto":
            return None
        cls = options.get("rknnlite_cls")
        if cls is not None and not all(hasattr(cls, f"NPU_CORE_{i}") for i in range(3)):
            return None  # a runtime (double) without per-core masks: leave the choice to it
        cores = npu_core_count(self.model_path) if npu_cores is None else int(npu_cores)
        if cores < 2:
            return None
        return [str(i % cores) for i in range(self.workers)]

    # ------------------------------------------------------------------ state
    @property
    def in_flight(self) -> int:
        """Frames taken by a worker and not yet handed back (current run)."""
        st = self._state
        return st.in_flight if st is not None else 0

    @property
    def dropped(self) -> int:
        """Live frames dropped because every worker was busy (current or last run)."""
        st = self._state
        return st.dropped if st is not None else 0

    def stop(self) -> None:
        """Ask the current run to end: no new frames are read or started, frames being
        estimated get up to ``STOP_GRACE_S`` to finish and are handed back in order, then
        :meth:`run` returns. Safe to call from a signal handler (it only sets a flag)."""
        self._request_stop()

    def _request_stop(self) -> None:
        if not self._stop:
            self._stop_at = time.monotonic()
            self._stop = True

    def _grace_left(self) -> float:
        """Seconds left of the stop's grace period (everything after a stop shares it)."""
        return max(0.0, self._stop_at + STOP_GRACE_S - time.monotonic())

    # ------------------------------------------------------------------ threads
    def _read(self, frames: Iterable[Any], st: _RunState) -> None:
        it = iter(frames)
        try:
            while not self._stop:
                t0 = time.perf_counter()
                try:
                    item = next(it)
                except StopIteration:
                    break
                frame, tag = _split_item(item)
                t1 = time.perf_counter()
                job = _Job(st.read, frame, tag, t1, (t1 - t0) * 1e3)
                with st.cond:
                    st.read += 1
                    if st.live:
                        while len(st.waiting) >= st.capacity:
                            st.waiting.popleft()
                            st.dropped += 1
                    else:
                        while len(st.waiting) >= st.capacity and not self._stop:
                            st.cond.wait(POLL_S)
                    st.waiting.append(job)
                    st.cond.notify_all()
        except BaseException as exc:  # a broken source ends the run after what was read
            st.source_error = exc
        finally:
            with st.cond:
                st.source_done = True
                st.cond.notify_all()

    def _take(self, st: _RunState) -> Optional[_Job]:
        with st.cond:
            while not self._stop:
                if st.waiting and st.in_flight < st.max_in_flight:
                    job = st.waiting.popleft()
                    job.seq = st.next_seq
                    st.next_seq += 1
                    st.cond.notify_all()
                    return job
                if st.source_done and not st.waiting:
                    return None
                st.cond.wait(POLL_S)
        return None

    def _propagation(self) -> bool:
        return self.boxes.detector is not None and self.tracker is not None

    def _boxes_for(self, job: _Job, st: _RunState) -> Tuple[Optional[np.ndarray], Optional[BoxPlan]]:
        if not self._propagation():
            return self.boxes(job.frame, job.index), None
        # the paper's scheme: detector boxes every N frames merged by IoU with the boxes
        # propagated from the tracked poses of frame seq - workers; propagated boxes alone in between
        src = job.seq - self.workers
        if src < 0:
            prop = Propagation()
        else:
            with st.cond:
                while src not in st.snapshots:
                    if self._stop:
                        raise _Abandoned()
                    st.cond.wait(POLL_S)
                prop = st.snapshots.pop(src)
        det = self.boxes(job.frame, job.index) if prop.detect else None
        plan = merge_boxes(det, prop, self.tracker.merge_iou, job.frame.shape)
        return plan.boxes, plan

    def _work(self, wid: int, est: PoseEstimator, st: _RunState) -> None:
        k = est.meta.num_joints
        from_det = True if self.boxes.from_detector else None
        while True:
            job = self._take(st)
            if job is None:
                return
            t0 = time.perf_counter()
            error = None
            est.last_timings = {}
            t1 = t0
            plan = None
            try:
                b, plan = self._boxes_for(job, st)
                t1 = time.perf_counter()
                poses = est(job.frame, b, from_detector=from_det)
                if self.tracker is None and self.person_thr > 0:
                    poses = poses.select(np.flatnonzero(person_filter(poses, self.person_thr)))
            except _Abandoned:
                return
            except Exception as exc:  # one bad frame must not end the stream
                poses = Poses.empty(k)
                error = (str(exc) or type(exc).__name__).splitlines()[0]
                if t1 == t0:
                    t1 = time.perf_counter()
            timings = {"capture": job.capture_ms, "boxes": (t1 - t0) * 1e3}
            timings.update(est.last_timings)
            res = FrameResult(job.index, job.seq, job.frame, poses, timings, job.tag, error, wid)
            with st.cond:
                st.results[job.seq] = (res, job.t_read, plan)
                st.cond.notify_all()

    def _next_result(self, st: _RunState) -> Optional[Tuple[FrameResult, float, Optional[BoxPlan]]]:
        with st.cond:
            while True:
                got = st.results.pop(st.next_out, None)
                if got is not None:
                    return got
                if st.source_done and not st.waiting and st.next_out >= st.next_seq:
                    return None
                if self._stop and (st.next_out >= st.next_seq or self._grace_left() <= 0):
                    return None
                if not any(t.is_alive() for t in self._threads[1:]):
                    return None
                st.cond.wait(POLL_S)

    def _post_track(self, res: FrameResult, st: _RunState, plan: Optional[BoxPlan] = None) -> None:
        """Track ``res`` (in order) and leave the boxes it propagates for frame seq + workers.

        Ghosts die here, in frame order: a box propagated (``workers`` frames ahead) from a
        person who has died since is dropped by the tracker when that frame comes back, so a
        ghost lives no longer with several workers than with one."""
        t0 = time.perf_counter()
        tr = self.tracker
        if tr is not None and res.error is None:
            res.poses = tr.update(res.poses, res.index, plan)
        if self._propagation():
            target = res.seq + self.workers
            snap = tr.propagation(target, span=self.workers)
            with st.cond:
                st.snapshots[res.seq] = snap
                st.cond.notify_all()
        res.timings["track"] = (time.perf_counter() - t0) * 1e3

    # ------------------------------------------------------------------ run
    def run(self, frames: Iterable[Any], live: bool = False) -> Iterator[FrameResult]:
        """Estimate every frame of ``frames``; yields one :class:`FrameResult` per processed
        frame, in input order.

        Args:
            frames: BGR ``(H, W, 3)`` uint8 frames, or ``(frame, tag)`` pairs whose ``tag``
                (e.g. a media time) comes back in the result.
            live: the source is a camera: when every worker is busy the oldest waiting frame
                is dropped (``dropped`` counts them). Files and lists are never dropped from.

        Stops early after :meth:`stop`. A frame whose detector or estimator raised comes back
        with ``error`` set and no poses; the run goes on.
        """
        with self._lock:
            if self._threads and any(t.is_alive() for t in self._threads):
                raise RuntimeError("Pipeline.run: a run is already in progress")
            self._stop = False
            cap = self.queue_size or (1 if live else 2)
            st = self._state = _RunState(cap, self.workers + cap, bool(live))
            if self.tracker is not None:
                self.tracker.reset()
            self._threads = [threading.Thread(target=self._read, args=(frames, st), name="edgepose-reader",
                                              daemon=True)]
            self._threads += [threading.Thread(target=self._work, args=(i, est, st), name=f"edgepose-worker-{i}",
                                               daemon=True) for i, est in enumerate(self.estimators)]
        for t in self._threads:
            t.start()
        try:
            while True:
                got = self._next_result(st)
                if got is None:
                    break
                res, t_read, plan = got
                self._post_track(res, st, plan)
                res.latency_ms = (time.perf_counter() - t_read) * 1e3
                with st.cond:
                    st.next_out += 1
                    st.cond.notify_all()
                if res.error is not None:
                    self._report(res)
                yield res
            if st.source_error is not None and not self._stop:
                raise st.source_error
        finally:
            self._request_stop()
            self._join(self._grace_left() + 0.1)

    def _report(self, res: FrameResult) -> None:
        if self.on_error is not None:
            self.on_error(res)
        else:
            log.warning("frame %d: %s", res.index, res.error)

    def _join(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, end - time.monotonic()))

    def close(self) -> None:
        """Stop any run and free the estimators (those whose worker is still inside a runtime
        call after the grace period are left to the process exit rather than released under it)."""
        self._request_stop()
        threads = self._threads
        if threads:
            self._join(self._grace_left() + 0.1)
        busy = {i for i, t in enumerate(threads[1:]) if t.is_alive()}
        for i, est in enumerate(self.estimators):
            if i not in busy:
                est.close()

    def __enter__(self) -> "Pipeline":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
