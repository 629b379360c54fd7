"""The workbench's routes: thin FastAPI handlers over :class:`Workbench` and :class:`TrainingJob`.

Pages are plain HTML/CSS/JS from ``static/``, served by snapkit itself (nothing from a CDN, no build step). Every
request needs the token (see :mod:`snapkit.ui.security`); what a request got wrong comes back as JSON
``{"error": "one sentence"}`` with a 4xx status: 400 a bad label or value, 401 no token, 403 a path leaving its
folder, 404 a missing file, 409 a busy training or a taken name, 413 too large, 415 not audio, 422 a silent clip.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.datastructures import UploadFile

from snapkit.dataset.labels import validate_label
from snapkit.errors import AudioFileError, SnapkitError
from snapkit.ui.listening import ListenJob, SourceFactory, microphone
from snapkit.ui.security import TOKEN_COOKIE, TOKEN_HEADER, TOKEN_QUERY, PathRefused, token_matches
from snapkit.ui.training import TrainingJob, TrainRequest
from snapkit.ui.workbench import SilentClip, TrainingBusy, Workbench, spectrogram_png

STATIC_DIR = Path(__file__).parent / "static"
# An upload or a recording larger than this is refused (413) before it is read whole.
DEFAULT_MAX_UPLOAD_MB = 50.0
# Browser recordings: the rates a sound card gives, and at most this long.
MIN_RECORD_RATE_HZ, MAX_RECORD_RATE_HZ = 8_000, 192_000
MAX_RECORD_S = 30.0
# How often a server-sent event stream looks for new progress lines (seconds).
STREAM_POLL_S = 0.3
_SAFE_METHODS = {"GET", "HEAD"}


class MoveBody(BaseModel):
    paths: list[str]
    label: str


class DeleteBody(BaseModel):
    paths: list[str]


class RenameBody(BaseModel):
    old: str
    new: str


class ReviewBody(BaseModel):
    root: str
    path: str
    label: str


class ListenBody(BaseModel):
    run: str


class TrainBody(BaseModel):
    backbone: str = "convnet"
    epochs: int | None = None
    max_minutes: float = 5.0
    estimate: bool = True


def create_app(
    workbench: Workbench,
    token: str | None,
    *,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    source_factory: SourceFactory = microphone,
) -> FastAPI:
    """The workbench as an ASGI app. ``token`` None: no token asked (loopback only, see ``check_host``).
    ``source_factory`` opens the live detector's audio (the microphone; an in-memory source in tests)."""
    app = FastAPI(title="snapkit workbench", docs_url=None, redoc_url=None, openapi_url=None)
    job = TrainingJob(workbench.data_dir, workbench.runs_dir)
    # Live clips go where the review page looks: the first --events folder (none given: no clips are saved).
    listener = ListenJob(workbench.events_dirs[0] if workbench.events_dirs else None, source_factory)
    app.state.workbench, app.state.job, app.state.listener = workbench, job, listener
    max_bytes = int(max_upload_mb * 1024 * 1024)

    @app.middleware("http")
    async def require_token(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if token is None:
            return await call_next(request)
        from_query = request.query_params.get(TOKEN_QUERY)
        if request.method in _SAFE_METHODS:
            if token_matches(from_query, token):
                # The first visit: the token becomes a cookie and leaves the address bar (and the history).
                clean = request.url.remove_query_params(TOKEN_QUERY)
                response: Response = RedirectResponse(str(clean), status_code=303)
                response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
                return response
            if token_matches(request.cookies.get(TOKEN_COOKIE), token) or token_matches(
                request.headers.get(TOKEN_HEADER), token
            ):
                return await call_next(request)
        elif token_matches(request.headers.get(TOKEN_HEADER), token):
            # Changes need the header: another site's link or form can carry the cookie but never set a header.
            return await call_next(request)
        return _error(401, "This request lacks the workbench's access token; open the address `snapkit ui` printed.")

    for kind, status in [
        (PathRefused, 403),
        (FileNotFoundError, 404),
        (SilentClip, 422),
        (TrainingBusy, 409),
        (FileExistsError, 409),
        (AudioFileError, 415),
        (SnapkitError, 400),
    ]:
        app.add_exception_handler(kind, _handler(status))

    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        page = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
        return HTMLResponse(page.replace("{{TOKEN}}", token or ""))

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    # --- files ----------------------------------------------------------------------------------------------------

    @app.get("/api/file")
    def file(root: str, path: str) -> FileResponse:
        return FileResponse(workbench.resolve(root, path))

    @app.get("/api/spectrogram.png")
    def spectrogram(root: str, path: str) -> Response:
        png = spectrogram_png(workbench.resolve(root, path))
        return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=60"})

    # --- dataset --------------------------------------------------------------------------------------------------

    @app.get("/api/dataset")
    def dataset() -> dict[str, Any]:
        return {**workbench.dataset(), "changes": workbench.changes_since_training()}

    @app.post("/api/move")
    def move(body: MoveBody) -> dict[str, Any]:
        return workbench.move(body.paths, body.label)

    @app.post("/api/delete")
    def delete(body: DeleteBody) -> dict[str, Any]:
        return workbench.delete(body.paths)

    @app.post("/api/rename")
    def rename(body: RenameBody) -> dict[str, Any]:
        return workbench.rename_class(body.old, body.new)

    @app.post("/api/undo")
    def undo() -> dict[str, Any]:
        return workbench.undo()

    @app.post("/api/upload")
    async def upload(request: Request, label: str, clip_s: float = 2.0, hop_s: float = 1.0) -> Any:
        validate_label(label)
        declared = int(request.headers.get("content-length") or 0)
        if declared > max_bytes:
            return _too_large(max_upload_mb)
        form = await request.form(max_files=100)
        files = [item for item in form.getlist("files") if isinstance(item, UploadFile)]
        if not files:
            raise SnapkitError("No files were uploaded; choose audio files (WAV, FLAC, OGG, MP3) to import.")
        with tempfile.TemporaryDirectory(prefix="snapkit-upload-") as folder:
            saved = []
            for number, item in enumerate(files):
                name = PurePosixPath((item.filename or "").replace("\\", "/")).name or f"upload-{number}.wav"
                target = Path(folder) / f"{number}" / name.lstrip(".")
                target.parent.mkdir()
                if _copy_limited(item, target, max_bytes) is None:
                    return _too_large(max_upload_mb)
                saved.append(target)
            try:
                return workbench.import_uploads(saved, label, clip_s, hop_s)
            except AudioFileError as err:
                # The message names the temporary copy; the user knows the file by the name they uploaded.
                message = str(err)
                for path in saved:
                    message = message.replace(str(path), path.name)
                return _error(415, message)

    @app.post("/api/record")
    async def record(request: Request, label: str, sample_rate_hz: int) -> Any:
        """A clip recorded in the browser, as little-endian float32 samples in [-1, 1]."""
        validate_label(label)
        if not MIN_RECORD_RATE_HZ <= sample_rate_hz <= MAX_RECORD_RATE_HZ:
            raise SnapkitError(
                f"sample_rate_hz {sample_rate_hz} is not a sound card's rate ({MIN_RECORD_RATE_HZ}-"
                f"{MAX_RECORD_RATE_HZ} Hz)."
            )
        limit = min(max_bytes, int(MAX_RECORD_S * sample_rate_hz * 4))
        if int(request.headers.get("content-length") or 0) > limit:
            return _too_large(limit / 1024 / 1024)
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > limit:
                return _too_large(limit / 1024 / 1024)
        if not body or len(body) % 4:
            raise SnapkitError("The recording is empty or not float32 samples; record again.")
        audio = np.frombuffer(bytes(body), dtype="<f4").astype(np.float32)
        if not np.all(np.isfinite(audio)):
            raise SnapkitError("The recording holds samples that are not numbers; record again.")
        return workbench.save_recording(label, audio, sample_rate_hz)

    # --- review ---------------------------------------------------------------------------------------------------

    @app.get("/api/review")
    def review_list() -> dict[str, Any]:
        return {
            "folders": [str(folder) for folder in workbench.events_dirs],
            "clips": workbench.event_clips(),
            "changes": workbench.changes_since_training(),
        }

    @app.post("/api/review")
    def review(body: ReviewBody) -> dict[str, Any]:
        return workbench.review(body.root, body.path, body.label)

    # --- train ----------------------------------------------------------------------------------------------------

    @app.post("/api/train")
    def train(body: TrainBody) -> dict[str, Any]:
        request = TrainRequest(body.backbone, body.epochs, body.max_minutes, body.estimate)
        return {"run": job.start(request)}

    @app.get("/api/train")
    def train_status(since: int = 0) -> dict[str, Any]:
        from snapkit.training.train import BACKBONE_CHOICES

        return {**job.status(since), "backbones": list(BACKBONE_CHOICES)}

    @app.get("/api/train/stream")
    async def train_stream() -> StreamingResponse:
        async def events() -> AsyncIterator[str]:
            since = 0
            while True:
                status = job.status(since)
                since = status["next"]
                yield f"data: {json.dumps(status)}\n\n"
                if status["state"] != "running":
                    return
                await asyncio.sleep(STREAM_POLL_S)

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    # --- listen ---------------------------------------------------------------------------------------------------

    @app.get("/api/models")
    def models() -> dict[str, Any]:
        return {"runs": workbench.models()}

    @app.post("/api/listen")
    def listen(body: ListenBody) -> dict[str, Any]:
        listener.start(workbench.resolve("runs", f"{body.run}/model.snapkit"), body.run)
        return listener.snapshot()

    @app.post("/api/listen/stop")
    def listen_stop() -> dict[str, Any]:
        listener.stop()
        return listener.snapshot()

    @app.get("/api/listen")
    def listen_status() -> dict[str, Any]:
        return listener.snapshot()

    @app.get("/api/listen/stream")
    async def listen_stream() -> StreamingResponse:
        async def events() -> AsyncIterator[str]:
            while True:
                snapshot = listener.snapshot()
                yield f"data: {json.dumps(snapshot)}\n\n"
                if snapshot["state"] != "running":
                    return
                await asyncio.sleep(STREAM_POLL_S)

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    return app


def _copy_limited(item: UploadFile, target: Path, max_bytes: int) -> int | None:
    """Copy the upload to ``target``; None (and nothing kept) if it is larger than ``max_bytes``."""
    written = 0
    with open(target, "wb") as out:
        while chunk := item.file.read(1024 * 1024):
            written += len(chunk)
            if written > max_bytes:
                out.close()
                target.unlink(missing_ok=True)
                return None
            out.write(chunk)
    return written


def _too_large(limit_mb: float) -> JSONResponse:
    return _error(413, f"The upload is larger than {limit_mb:g} MB; import larger files with `snapkit import`.")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _handler(status: int) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    async def handle(request: Request, error: Exception) -> JSONResponse:
        message = str(error) if not isinstance(error, FileNotFoundError) or error.args else "No such file."
        return _error(status, message)

    return handle
