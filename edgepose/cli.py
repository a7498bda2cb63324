"""``edgepose run`` and ``edgepose info``: the command a user starts on the board.

Bad input (no camera, missing model, unwritable or existing output, bad boxes) ends with one
line on stderr and exit code 2; Ctrl-C / SIGTERM stop the loop and flush every output.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any, Callable, Dict, Optional, Sequence

import numpy as np

EXIT_USAGE = 2



def _open_quietly(dev: Any) -> Any:
    """Open a camera without OpenCV's own WARN/ERROR lines: our one-line message says it better.
    OpenCV 5 logs through ``cv2.utils.logging`` and V4L2 may print from C, so both the log level
    and file descriptor 2 are silenced around the open (edgepose.quiet)."""
    import cv2

    from .quiet import captured_stderr, opencv_silenced

    with opencv_silenced(), captured_stderr():
        return cv2.VideoCapture(dev)


def _read_image(path: str) -> "tuple[Optional[np.ndarray], str]":
    """``cv2.imread`` with libjpeg's own warnings captured: ``(image or None, the warning)``;
    a truncated or corrupt JPEG decodes partially (grey below the damage) with a warning."""
    import cv2

    from .quiet import captured_stderr

    with captured_stderr() as lines:
        img = cv2.imread(path, cv2.IMREAD_COLOR)
    return img, "; ".join(lines)


class UsageError(Exception):
    """A problem the user can fix; printed as one line, exit code 2."""


class SourceLost(UsageError):
    """The camera stopped delivering and reconnecting failed (one line, exit 2, outputs kept)."""


# ----------------------------------------------------------------------------- arguments

def build_parser() -> argparse.ArgumentParser:
    from .tracking import CONFIRM_K, MAX_AGE, PERSON_THR, PROP_THR

    p = argparse.ArgumentParser(prog="edgepose", description="Top-down pose estimation on Rockchip NPU boards and PCs.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run a model on a camera, a video or an image")
    src = r.add_mutually_exclusive_group(required=True)
    src.add_argument("--camera", metavar="INDEX", help="camera index (0 = /dev/video0) or a device path")
    src.add_argument("--video", metavar="FILE", help="video file")
    src.add_argument("--image", metavar="FILE", help="image file")
    r.add_argument("--model", required=True, metavar="M", help=".onnx (metadata inside) or .rknn (+ .rknn.json)")
    r.add_argument("--backend", default="auto", choices=["auto", "onnxruntime", "rknnlite"])
    r.add_argument("--core-mask", default="auto", help="RK3588 NPU cores: auto, 0, 1, 2, 0_1, 0_1_2")
    r.add_argument("--threads", type=int, default=0, help="onnxruntime CPU threads (0: its default)")
    r.add_argument("--workers", default="1", metavar="N|auto", help="estimators in flight, each with its own backend "
                   "(rknnlite: worker i on NPU core i %% cores); auto: the board's NPU core count, else 1 (default 1)")
    r.add_argument("--boxes", metavar="JSON", help="person boxes: [[x,y,w,h(,score)],...] or {\"frame\": [...]}")
    r.add_argument("--detector", metavar="FILE|hog|MODULE:NAME", help="person detector: a YOLO .onnx (Ultralytics "
                   "YOLOv8/YOLO11, model zoo or YOLOX layout) or .rknn (docs/DETECT.md); 'hog' (OpenCV's people "
                   "detector: no weights, CPU only, slow and weak); or a plug-in MODULE:NAME, a callable frame -> "
                   "(N,5) xywh+score (a class is instantiated without arguments)")
    r.add_argument("--detect-every", type=int, default=1, metavar="N", help="run the detector every N frames and "
                   "propagate boxes from the last poses in between (default 1)")
    r.add_argument("--flip-test", action="store_true", help="also run mirrored crops and merge (slower, more accurate)")
    r.add_argument("--no-track", action="store_true", help="do not assign track ids (all -1)")
    r.add_argument("--max-age", type=int, default=MAX_AGE, help="frames a lost track keeps its id and takes it back "
                   f"when it reappears near where it was (default {MAX_AGE})")
    r.add_argument("--person-thr", type=float, default=PERSON_THR, metavar="T", help="report, draw, track and "
                   "propagate only persons whose score (or, for a person the detector backs, its box score) reaches T "
                   f"(default {PERSON_THR})")
    r.add_argument("--prop-thr", type=float, default=PROP_THR, metavar="T", help="a person carried by box propagation "
                   f"alone dies when its pose score (mean joint score above 0.2) falls below T (default {PROP_THR})")
    r.add_argument("--confirm-k", type=int, default=CONFIRM_K, metavar="K", help="a person carried by box propagation "
                   f"alone dies after K detector runs that do not confirm it (default {CONFIRM_K})")
    r.add_argument("--jsonl", metavar="FILE", help="write one JSON line per frame to FILE ('-' = stdout)")
    r.add_argument("--out", metavar="FILE", help="annotated video (.mp4, mp4v) or image (.jpg/.png for --image)")
    r.add_argument("--serve", metavar="[HOST:]PORT", help="MJPEG preview server, e.g. :8080 (binds 127.0.0.1 unless a "
                   "host is given)")
    r.add_argument("--token", help="require this token (?token=T or X-Edgepose-Token header) on the preview server")
    r.add_argument("--draw-thr", type=float, default=0.2, metavar="T", help="draw joints scoring above T (default 0.2)")
    r.add_argument("--loop", action="store_true", help="replay the --video / --image until Ctrl-C (e.g. for --serve)")
    r.add_argument("--max-frames", type=int, default=0, metavar="N", help="stop after N frames (0: all)")
    r.add_argument("--reconnect", type=int, default=5, metavar="N", help="reopen a --camera that stops delivering up to "
                   "N times, with back-off from 0.5 s, before giving up (default 5)")
    r.add_argument("--force", action="store_true", help="overwrite existing --out / --jsonl files")
    r.add_argument("--quiet", action="store_true", help="no status line")
    i = sub.add_parser("info", help="print a model's metadata, the backend and the native kernel status")
    i.add_argument("--model", required=True, metavar="M")
    i.add_argument("--backend", default="auto", choices=["auto", "onnxruntime", "rknnlite"])
    i.add_argument("--core-mask", default="auto")
    return p


# ----------------------------------------------------------------------------- helpers

def _backend_options(args: argparse.Namespace) -> Dict[str, Any]:
    from .backends import choose_backend

    name = choose_backend(args.model, args.backend)
    if name == "rknnlite":
        return {"core_mask": args.core_mask}
    return {"threads": getattr(args, "threads", 0)}


def load_estimator(args: argparse.Namespace, flip_test: bool = False):
    """PoseEstimator for ``args.model``; user-fixable problems become UsageError."""
    from .backends import BackendError
    from .estimator import PoseEstimator
    from .metadata import MetadataError

    model = Path(args.model)
    if not model.is_file():
        raise UsageError(f"--model {model}: file not found")
    try:
        return PoseEstimator(model, backend=args.backend, flip_test=flip_test, **_backend_options(args))
    except (MetadataError, BackendError, ValueError) as exc:
        raise UsageError(f"--model {model}: {exc}") from None


def parse_workers(text: str) -> Any:
    """``--workers`` value: a positive integer or ``"auto"``."""
    t = str(text).strip().lower()
    if t == "auto":
        return "auto"
    if not t.isdigit() or int(t) < 1:
        raise UsageError(f"--workers {text}: expected a number >= 1 or auto")
    return int(t)


def load_pipeline(args: argparse.Namespace, detector: Any = None, boxes: Any = None, on_error: Any = None):
    """Pipeline of ``--workers`` estimators for ``args.model``; user-fixable problems
    (including a worker that cannot start on its NPU core) become UsageError."""
    from .backends import BackendError
    from .metadata import MetadataError
    from .pipeline import Pipeline

    workers = parse_workers(getattr(args, "workers", "1"))
    model = Path(args.model)
    if not model.is_file():
        raise UsageError(f"--model {model}: file not found")
    try:
        return Pipeline(model, workers, detector, flip_test=args.flip_test, backend=args.backend, boxes=boxes,
                        on_error=on_error, person_thr=getattr(args, "person_thr", 0.0), **_backend_options(args))
    except (MetadataError, BackendError, ValueError) as exc:
        raise UsageError(f"--model {model}: {exc}") from None


def _read_frames(source: "FrameSource", max_frames: int, stop: Dict[str, Any]):
    """(frame, media time) pairs from ``source`` until its end, ``max_frames`` or a stop."""
    n = 0
    while not stop["flag"] and not (max_frames and n >= max_frames):
        frame, t_media = source.read()
        if frame is None:
            return
        n += 1
        yield frame, t_media


def _check_output(path: Optional[str], flag: str, force: bool) -> Optional[Path]:
    if not path or path == "-":
        return None
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{flag} {p}: is a directory; give a file name")
    if p.exists() and not force:
        raise UsageError(f"{flag} {p}: exists; pass --force to overwrite it or choose another name")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"{flag} {p}: folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"{flag} {p}: folder {parent} is not writable")
    return p


def load_detector(spec: str, args: Optional[argparse.Namespace] = None) -> Callable[[np.ndarray], np.ndarray]:
    """``FILE.onnx`` / ``FILE.rknn`` (:class:`edgepose.detect.PersonDetector`, on ``args``'
    --threads / --core-mask), ``hog`` (:class:`edgepose.detect.HogDetector`) or ``module:name``
    (a plug-in; classes are instantiated with no arguments) -> the detector callable."""
    if spec.lower() == "hog":
        from .detect import DetectorError, HogDetector

        try:
            return HogDetector()
        except DetectorError as exc:  # about the detector, not --model: no model path in front
            raise UsageError(str(exc)) from None
    if Path(spec).suffix.lower() in (".onnx", ".rknn"):
        from .backends import BackendError
        from .detect import PersonDetector

        if not Path(spec).is_file():
            raise UsageError(f"--detector {spec}: file not found")
        opts: Dict[str, Any] = {}
        if args is not None:
            opts = {"core_mask": args.core_mask} if spec.lower().endswith(".rknn") else {"threads": args.threads}
        try:
            return PersonDetector(spec, **opts)
        except (BackendError, ValueError) as exc:  # DetectorError / MetadataError are ValueErrors
            raise UsageError(f"--detector {exc}" if str(exc).startswith(spec) else f"--detector {spec}: {exc}") from None
    mod_name, _, attr = spec.partition(":")
    if not mod_name or not attr:
        raise UsageError(f"--detector {spec!r}: expected a .onnx/.rknn file, 'hog' or MODULE:NAME, e.g. mydet:Detector")
    try:
        obj = getattr(importlib.import_module(mod_name), attr)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"--detector {spec}: cannot import it ({exc})") from None
    if isinstance(obj, type):
        obj = obj()
    if not callable(obj):
        raise UsageError(f"--detector {spec}: not callable; it must map a BGR frame to (N, 5) boxes")
    return obj


class FrameSource:
    """Frames from a camera, a video file or one image, with their media time in seconds."""

    def __init__(self, camera: Optional[str] = None, video: Optional[str] = None, image: Optional[str] = None,
                 loop: bool = False, reconnect: int = 5, backoff_s: float = 0.5,
                 sleep: Optional[Callable[[float], None]] = None, log: Optional[IO[str]] = None) -> None:
        """``reconnect``: how many times a camera that stops delivering is reopened (waiting
        ``backoff_s``, doubling up to 8 s, between tries) before :class:`SourceLost`; 0 gives
        up at once. A video file that ends is just the end (or a rewind with ``loop``)."""
        import cv2

        self.loop = bool(loop) and camera is None
        self.reconnect, self.backoff_s, self._sleep = int(reconnect), float(backoff_s), sleep or time.sleep
        self._log = log
        self._dev: Any = None
        self.cap = None
        self.image = None
        self.fps = 25.0
        self.total = 0
        self.live = camera is not None
        if image is not None:
            if Path(image).is_dir():
                raise UsageError(f"--image {image}: is a folder; give one image file (for many images, "
                                 "encode them as a video or run once per file)")
            if not Path(image).is_file():
                raise UsageError(f"--image {image}: file not found")
            self.image, warning = _read_image(image)
            if self.image is None:
                raise UsageError(f"--image {image}: cannot decode it as an image")
            if warning:
                print(f"edgepose: warning: --image {image}: the image is damaged ({warning}); "
                      "only its readable part is processed", file=sys.stderr)
            self.total = 1
            self.name = image
        elif video is not None:
            if not Path(video).is_file():
                raise UsageError(f"--video {video}: file not found")
            self.cap = cv2.VideoCapture(video)
            if not self.cap.isOpened():
                raise UsageError(f"--video {video}: OpenCV cannot open it (unsupported codec or not a video)")
            self.name = video
        else:
            dev: Any = int(camera) if str(camera).isdigit() else camera
            self._dev = dev
            self.cap = _open_quietly(dev)
            if not self.cap.isOpened():
                raise UsageError(f"--camera {camera}: cannot open the camera (check it is connected, "
                                 "ls /dev/video*, and that no other program uses it)")
            self.name = f"camera {camera}"
        if self.cap is not None:
            fps = self.cap.get(cv2.CAP_PROP_FPS)
            self.fps = float(fps) if fps and 1 <= fps <= 240 else 25.0
            self.total = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if not self.live else 0
        self._i = 0
        self._t0 = time.monotonic()

    def read(self):
        """(frame, media time s) or (None, None) at the end."""
        if self.image is not None:
            if self._i > 0 and not self.loop:
                return None, None
            self._i += 1
            return self.image.copy(), (self._i - 1) / self.fps if self.loop else 0.0
        ok, frame = self.cap.read()
        if (not ok or frame is None) and self.loop and self._i > 0:
            import cv2

            # rewind by reopening: seeking an H.264 stream back to frame 0 has shown decoder
            # artefacts on the first frames after the seek; a fresh capture never does
            self.cap.release()
            self.cap = cv2.VideoCapture(self.name)
            ok, frame = self.cap.read()
        if (not ok or frame is None) and self.live:
            frame = self._reconnect()
        if frame is None:
            return None, None
        t = time.monotonic() - self._t0 if self.live else self._i / self.fps
        self._i += 1
        return frame, t

    def _reconnect(self) -> np.ndarray:
        """Reopen a camera that stopped delivering, with back-off; a frame, or SourceLost."""
        log = self._log or sys.stderr
        wait = self.backoff_s
        for attempt in range(1, self.reconnect + 1):
            print(f"edgepose: {self.name} delivered no frame after {self._i} frames; reconnecting in {wait:.1f} s "
                  f"(try {attempt}/{self.reconnect})", file=log, flush=True)
            self._sleep(wait)
            wait = min(wait * 2, 8.0)
            self.cap.release()
            self.cap = _open_quietly(self._dev)
            if self.cap.isOpened():
                ok, frame = self.cap.read()
                if ok and frame is not None:
                    print(f"edgepose: {self.name} reconnected", file=log, flush=True)
                    return frame
        raise SourceLost(f"{self.name}: stopped delivering frames after {self._i} frames and did not come back "
                         f"after {self.reconnect} reconnect(s); outputs so far are complete")

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()


class StatusLine:
    """fps and per-stage milliseconds on stderr, refreshed at most twice a second."""

    def __init__(self, enabled: bool = True, stream: Optional[IO[str]] = None) -> None:
        self.enabled = enabled
        self.stream = stream = stream if stream is not None else sys.stderr  # the one at run time
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self._last = 0.0
        self._period = 0.5 if self.tty else 5.0
        self._sum: Dict[str, float] = {}
        self._n = 0
        self._t0 = time.monotonic()
        self.frames = 0

    def update(self, timings: Dict[str, float], persons: int, force: bool = False, in_flight: int = 0,
               dropped: int = 0) -> None:
        self.frames += 1
        for k, v in timings.items():
            self._sum[k] = self._sum.get(k, 0.0) + v
        self._n += 1
        now = time.monotonic()
        if not self.enabled or (not force and now - self._last < self._period):
            return
        fps = self.frames / max(now - self._t0, 1e-9)
        stages = " ".join(f"{k} {v / self._n:.1f}" for k, v in self._sum.items())
        line = (f"frame {self.frames} | {fps:.1f} fps | {in_flight} in flight | {dropped} dropped | "
                f"{persons} person(s) | ms: {stages}")
        self.stream.write(("\r" + line + "\033[K") if self.tty else line + "\n")
        self.stream.flush()
        self._last = now
        self._sum, self._n = {}, 0

    def finish(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()


# ----------------------------------------------------------------------------- run

def run(args: argparse.Namespace) -> Dict[str, Any]:
    """The ``run`` loop; returns a summary (frames, persons, fps, mean stage ms, outputs)."""
    import cv2

    from .boxes import load_boxes_json
    from .draw import draw_poses, stage_text
    from .serve import PreviewServer
    from .sinks import DiskGuard, JsonlSink, StreamLines, VideoSink
    from .tracking import PoseTracker

    if args.max_frames < 0:
        raise UsageError(f"--max-frames {args.max_frames}: must be >= 0")
    if getattr(args, "reconnect", 0) < 0:
        raise UsageError(f"--reconnect {args.reconnect}: must be >= 0")
    if args.detect_every < 1:
        raise UsageError(f"--detect-every {args.detect_every}: must be >= 1")
    for flag, v in (("--person-thr", args.person_thr), ("--prop-thr", args.prop_thr)):
        if not 0.0 <= v <= 1.0:
            raise UsageError(f"{flag} {v}: must be between 0 and 1")
    if args.confirm_k < 1:
        raise UsageError(f"--confirm-k {args.confirm_k}: must be >= 1")
    if args.max_age < 0:
        raise UsageError(f"--max-age {args.max_age}: must be >= 0")
    if args.token and not args.serve:
        raise UsageError("--token: only meaningful with --serve")
    if args.boxes and args.detector:
        raise UsageError("--boxes and --detector: give one or the other")
    if args.out == "-":
        raise UsageError("--out -: the annotated output must be a file (.mp4, or .jpg/.png with --image)")
    jsonl_path = _check_output(args.jsonl, "--jsonl", args.force)
    out_path = _check_output(args.out, "--out", args.force)
    given = [Path(p).resolve() for p in (args.video, args.image, args.model, args.boxes) if p]
    for flag, p in (("--out", out_path), ("--jsonl", jsonl_path)):
        if p is not None and p.resolve() in given:
            raise UsageError(f"{flag} {p}: is one of the inputs; choose another output name")
    if out_path is not None and jsonl_path is not None and out_path.resolve() == jsonl_path.resolve():
        raise UsageError(f"--out and --jsonl: both name {out_path}; choose two files")
    if out_path is not None and out_path.suffix.lower() not in (".mp4", ".avi", ".mkv", ".mov", ".jpg", ".jpeg", ".png"):
        raise UsageError(f"--out {out_path}: expected a .mp4 (or .avi/.mkv) video, or .jpg/.png with --image")
    if out_path is not None and out_path.suffix.lower() in (".jpg", ".jpeg", ".png") and not args.image:
        raise UsageError(f"--out {out_path}: an image file only fits --image; use .mp4 for a video or camera")
    boxes = None
    if args.boxes:
        try:
            boxes = load_boxes_json(args.boxes)
        except (FileNotFoundError, ValueError) as exc:
            raise UsageError(f"--boxes {exc}") from None
    detector = load_detector(args.detector, args) if args.detector else None
    parse_workers(getattr(args, "workers", "1"))  # a bad value fails before the camera opens
    source = FrameSource(args.camera, args.video, args.image, args.loop,
                         reconnect=getattr(args, "reconnect", 5))  # fail fast on a bad input

    def on_error(res) -> None:
        print(f"edgepose: frame {res.index}: {res.error}; going on", file=sys.stderr, flush=True)

    try:
        pipe = load_pipeline(args, detector, boxes, on_error)
    except BaseException:
        source.close()
        raise
    ks = pipe.keypoint_set
    if not args.no_track:
        pipe.tracker = PoseTracker(pipe.sigmas, max_age=args.max_age, detect_every=args.detect_every,
                                   person_thr=args.person_thr, prop_thr=args.prop_thr, confirm_k=args.confirm_k)
    tracker = pipe.tracker
    skeleton = ks.skeleton if ks else ()

    stop = {"flag": False, "why": ""}

    def on_signal(signum, _frame):
        stop["flag"], stop["why"] = True, signal.Signals(signum).name
        pipe.stop()

    summary: Dict[str, Any] = {"frames": 0, "persons": 0, "model": str(args.model),
                               "backend": pipe.estimators[0].backend.describe(), "workers": pipe.workers}
    with ExitStack() as stack:
        stack.callback(pipe.close)
        stack.callback(source.close)
        guard = DiskGuard()  # a full disk ends the run with every output still valid (edgepose.sinks)
        jsonl: Any = None
        if args.jsonl == "-":
            jsonl = StreamLines(sys.stdout)
        elif jsonl_path is not None:
            try:
                jsonl = JsonlSink(jsonl_path, overwrite=args.force, guard=guard)
            except OSError as exc:
                raise UsageError(f"--jsonl {jsonl_path}: cannot write it ({exc.strerror or exc})") from None
            stack.callback(jsonl.close)
        server = None
        if args.serve:
            try:
                server = PreviewServer(args.serve, args.token).start()
            except (OSError, ValueError) as exc:
                raise UsageError(str(exc)) from None
            stack.callback(server.close)
            print(f"edgepose: preview at {server.url}", file=sys.stderr, flush=True)
        writer = None
        status = StatusLine(not args.quiet)
        prev_handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
        in_main = threading_is_main()
        if in_main:
            signal.signal(signal.SIGTERM, on_signal)
            signal.signal(signal.SIGINT, on_signal)
            stack.callback(lambda: [signal.signal(s, h) for s, h in prev_handlers.items()])
        t_start = time.monotonic()
        stage_sum: Dict[str, float] = {}
        index = errors = 0
        # capture, boxes, estimation and tracking run in the pipeline; the sinks below see
        # the results in frame order
        for res in pipe.run(_read_frames(source, args.max_frames, stop), live=source.live):
            frame, poses = res.frame, res.poses
            errors += res.error is not None
            t3 = time.perf_counter()
            if out_path is not None or server is not None:
                draw_poses(frame, poses, skeleton, thr=args.draw_thr)
                if out_path is not None and not args.image:
                    if writer is None:
                        writer = VideoSink(out_path, source.fps, guard)
                        stack.callback(writer.close)
                    try:
                        writer.write(frame)
                    except ValueError as exc:
                        raise UsageError(str(exc)) from None
                elif out_path is not None:
                    if not cv2.imwrite(str(out_path), frame):
                        raise UsageError(f"--out {out_path}: OpenCV cannot write this image")
                if server is not None:
                    server.publish(frame)
            t4 = time.perf_counter()
            timings = dict(res.timings)
            timings["draw"] = (t4 - t3) * 1e3
            for k, v in timings.items():
                stage_sum[k] = stage_sum.get(k, 0.0) + v
            if jsonl is not None:
                rec = {"frame": res.index, "time": round(float(res.tag), 4), "persons": poses.to_list(),
                       "ms": {k: round(v, 2) for k, v in timings.items()}}
                if res.error is not None:
                    rec["error"] = res.error
                jsonl.write_line(json.dumps(rec, separators=(",", ":")))
            summary["persons"] += len(poses)
            index += 1
            status.update(timings, len(poses), in_flight=pipe.in_flight, dropped=pipe.dropped)
        if jsonl is not None:
            jsonl.flush()
        status.finish()
        elapsed = time.monotonic() - t_start
        summary.update(frames=index, seconds=round(elapsed, 2), fps=round(index / max(elapsed, 1e-9), 2),
                       stage_ms={k: round(v / max(index, 1), 2) for k, v in stage_sum.items()},
                       stopped_by=stop["why"] or None, jsonl=str(args.jsonl) if args.jsonl else None,
                       out=str(out_path) if out_path else None, tracks=tracker._next_id if tracker else 0,
                       dropped=pipe.dropped, errors=errors)
        if index == 0 and not stop["flag"]:
            raise UsageError(f"{source.name}: no frame could be read")
        if stop["flag"] and not args.quiet:
            print(f"edgepose: stopped by {stop['why']} after {index} frames; outputs flushed", file=sys.stderr)
        if index and not args.quiet:
            dropped = f", {pipe.dropped} dropped" if source.live or pipe.dropped else ""
            failed = f", {errors} failed" if errors else ""
            print(f"edgepose: {index} frames in {elapsed:.1f} s ({summary['fps']} fps{dropped}{failed}); "
                  f"mean ms: {stage_text(summary['stage_ms'])}", file=sys.stderr)
    return summary


def threading_is_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def info(args: argparse.Namespace) -> Dict[str, Any]:
    """Print metadata, backend and native kernel status; returns them as a dict."""
    from . import __version__, implementation, native_available
    from .backends import installed
    from .metadata import MetadataError, read_sidecar

    model = Path(args.model)
    is_rknn = model.suffix.lower() == ".rknn"
    if model.is_file():
        from .detect import is_detector_model, print_detector_info

        if is_detector_model(model):
            return print_detector_info(model, args.backend, args.core_mask)

    def sidecar(cause: Optional[UsageError]):
        # a board model's metadata is readable without (or despite) its NPU runtime
        if not model.is_file():
            raise cause or UsageError(f"--model {model}: file not found")
        try:
            return read_sidecar(model)
        except MetadataError as exc:
            raise cause or UsageError(f"--model {model}: {exc}") from None

    ready = True
    if is_rknn and args.backend in ("auto", "rknnlite") and not installed("rknnlite"):
        meta_obj = sidecar(None)
        backend = "rknnlite (not installed here: on the board pip install rknn-toolkit-lite2)"
    else:
        try:
            est = load_estimator(args)
        except UsageError as exc:
            if not is_rknn:
                raise
            meta_obj = sidecar(exc)
            backend, ready = f"rknnlite: NOT READY ({exc})", False
        else:
            meta_obj, backend = est.meta, est.backend.describe()
            est.close()
    meta = meta_obj.to_dict()
    meta.pop("source_config", None)
    out = {"edgepose": __version__, "model": str(args.model), "backend": backend, "ready": ready,
           "kernels": implementation(), "native_built": native_available(), "metadata": meta}
    print(f"model:    {out['model']}")
    print(f"backend:  {out['backend']}")
    print(f"kernels:  {out['kernels']} (native extension {'built' if out['native_built'] else 'NOT built: NumPy twins'})")
    print(f"edgepose: {out['edgepose']}")
    print("metadata:")
    for k, v in meta.items():
        print(f"  {k}: {json.dumps(v) if isinstance(v, (list, dict)) else v}")
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    from .backends import BackendError
    from .metadata import MetadataError
    from .sinks import OutputFull

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            run(args)
        else:
            if not info(args)["ready"]:
                return 1  # metadata shown, but this model cannot run here (see the backend line)
    except UsageError as exc:
        print(f"edgepose: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (BackendError, MetadataError) as exc:  # e.g. an RKNN sidecar that disagrees with the model
        print(f"edgepose: error: {args.model}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OutputFull as exc:  # a full disk: every output is closed and valid (edgepose.sinks)
        print(f"edgepose: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("edgepose: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `edgepose info ... | head`
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
