"""A local Kaggle: the HTTP protocol of the real `kaggle` 2.x client (kagglesdk), on 127.0.0.1.

Every API call of the client is a JSON `POST /api/v1/<service>/<Method>` with HTTP Basic auth
(`KAGGLE_USERNAME`/`KAGGLE_KEY`, kaggle.json) or a Bearer token (`KAGGLE_API_TOKEN`, `kaggle
auth login`). This server answers the ones the pipeline and `kaggle competitions submit` use:

    competitions.CompetitionApiService/ListDataFiles      paged file listing
    competitions.CompetitionApiService/DownloadDataFile   302 to GET /files/<name>?<signature>
    competitions.CompetitionApiService/StartSubmissionUpload   token + upload URL (raw PUT)
    competitions.CompetitionApiService/CreateSubmission   scores the upload (MAP@3)
    competitions.CompetitionApiService/ListSubmissions    PENDING, then COMPLETE or ERROR
    competitions.CompetitionApiService/GetSubmissionLimits
    security.OAuthService/IntrospectToken                 checks a KAGGLE_API_TOKEN
    users.AccountService/GenerateAccessToken              refresh token -> access token (login)

Files are served with ETag, Last-Modified, `Accept-Ranges: bytes` and answer `Range` with 206,
as a storage bucket does. Faults on demand: any status for an API method or a file (401, 403,
404, 429 with Retry-After, 5xx), a download cut short after N bytes (connection closed), or
stalled after N bytes until released (so a test can kill the client mid-download).

How the client finds it: `KAGGLE_API_ENVIRONMENT=LOCALHOST` makes the client call
`http://localhost/api/v1/...` (kagglesdk.kaggle_env's endpoint table). Rather than patch that
table, `client_env()` sets `HTTP_PROXY` to this server, an environment variable the client
already honours (kagglesdk merges the environment's proxy settings into every request, and its
download and upload requests are plain `requests` calls that do the same). The server accepts
the proxy's absolute-form request line, so every request the client makes, in this process or
in a subprocess (`dvc repro`, the `kaggle` CLI), reaches it with no code injected anywhere.

MAP@3 is written here from its definition (a hit at rank 1, 2 or 3 scores 1, 1/2, 1/3; a label
repeated in a row counts once; mean over the solution's rows), not taken from the pipeline.
"""

from __future__ import annotations

import base64
import hashlib
import io
import itertools
import json
import os
import secrets
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import pytest

API = "/api/v1/"
COMPETITIONS = "competitions.CompetitionApiService"
LAST_MODIFIED = "Tue, 25 Sep 2018 16:00:00 GMT"
PAGE_SIZE = 2  # small, so the client's paging is exercised with a handful of files


@dataclass
class Call:
    """One request as the server saw it."""

    method: str  # POST, GET, PUT
    path: str  # /api/v1/competitions.CompetitionApiService/ListDataFiles, /files/x.zip, ...
    status: int = 0
    range: str | None = None
    user: str | None = None  # whom the credentials named (None: none or bad)

    @property
    def name(self) -> str:
        """`ListDataFiles`, or `GET /files/test_simplified.csv` for non-API requests."""
        if self.path.startswith(API):
            return self.path.rsplit("/", 1)[-1]
        return f"{self.method} {self.path}"

    def __str__(self) -> str:
        text = self.name
        if self.range:
            text += f" (Range: {self.range})"
        return f"{text} -> {self.status}"


@dataclass
class Fault:
    target: str  # an API method name, or a served file name
    status: int = 0  # answer with this status ...
    cut_after: int | None = None  # ... or send this many body bytes, then close
    stall_after: int | None = None  # ... or send this many, then wait for release()
    times: int = 1
    retry_after: str | None = None
    message: str = ""


@dataclass
class Submission:
    ref: int
    file_name: str
    description: str
    data: bytes
    date: datetime
    user: str
    public_score: str | None = None
    private_score: str | None = None
    error: str | None = None
    polls_left: int = 1  # ListSubmissions answers PENDING this many times first


@dataclass
class KaggleServer:
    """The competition `competition`, its `files`, users and their rules, on a free port."""

    competition: str
    files: dict[str, bytes]
    solution: dict[str, str]  # key_id -> true label token
    users: dict[str, str] = field(default_factory=dict)  # username -> API key
    tokens: dict[str, str] = field(default_factory=dict)  # API token -> username
    refresh_tokens: dict[str, str] = field(default_factory=dict)  # `kaggle auth login`
    rules_accepted: set[str] = field(default_factory=set)
    zipped: set[str] = field(default_factory=set)  # served as <name>.zip, as Kaggle may do
    pending_polls: int = 1
    echo: str = ""  # appended to every error message: a server that echoes credentials back
    reply_echo: str = ""  # ... and to the texts a client shows (submit reply, scoring error)
    calls: list[Call] = field(default_factory=list)
    uploads: dict[str, bytes] = field(default_factory=dict)
    submissions: list[Submission] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._refs = itertools.count(41_000_001)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    # ------------------------------------------------------------ control

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> KaggleServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._released.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def fail(self, target: str, status: int, times: int = 1, **kwargs: object) -> None:
        """Answer the next `times` requests for `target` (method or file) with `status`."""
        self.faults.append(Fault(target, status=status, times=times, **kwargs))  # type: ignore[arg-type]

    def cut(self, file_name: str, after: int, times: int = 1) -> None:
        """Send only the first `after` bytes of `file_name` (full Content-Length), then close."""
        self.faults.append(Fault(file_name, cut_after=after, times=times))

    def stall(self, file_name: str, after: int) -> None:
        """Send `after` bytes of `file_name`, then hang until `release()`."""
        self._released.clear()
        self.faults.append(Fault(file_name, stall_after=after))

    def release(self) -> None:
        self._released.set()

    def names(self) -> list[str]:
        """The request sequence: `ListDataFiles`, `GET /files/x.csv`, ... (for assertions)."""
        return [c.name for c in self.calls]

    def log(self) -> list[str]:
        return [str(c) for c in self.calls]

    def clear(self) -> None:
        self.calls.clear()

    def body(self, path_name: str) -> bytes | None:
        """The bytes behind `/files/<path_name>` (a zipped file's zip too), or None."""
        if path_name in self.files:
            return self.files[path_name]
        inner = path_name.removesuffix(".zip")
        if path_name.endswith(".zip") and inner in self.zipped:
            return zip_bytes({inner.rsplit("/", 1)[-1]: self.files[inner]})
        return None

    def etag(self, data: bytes) -> str:
        return '"' + hashlib.sha1(data).hexdigest() + '"'

    def _take_fault(self, target: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.target == target and fault.times > 0:
                    fault.times -= 1
                    return fault
        return None

    # ------------------------------------------------------------ scoring

    def score(self, data: bytes) -> tuple[str | None, str | None]:
        """(MAP@3 as Kaggle prints it, None) or (None, why the file cannot be scored)."""
        lines = data.decode("utf-8", errors="replace").splitlines()
        if not lines or lines[0].strip() != "key_id,word":
            return None, "Submission must have the header key_id,word"
        predicted: dict[str, list[str]] = {}
        for line in lines[1:]:
            if not line.strip():
                continue
            key, _, words = line.partition(",")
            predicted[key.strip()] = words.strip().split(" ")
        missing = [k for k in self.solution if k not in predicted]
        if missing or len(predicted) != len(self.solution):
            return None, f"Submission must have {len(self.solution)} rows with the test key_ids"
        total = 0.0
        for key, truth in self.solution.items():
            seen: list[str] = []
            for rank, label in enumerate(predicted[key][:3], start=1):
                if label == truth and label not in seen:
                    total += 1.0 / rank
                    break
                seen.append(label)
        return f"{total / len(self.solution):.5f}", None


def _handler(server: KaggleServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

        # ---------------------------------------------------- plumbing

        def _path(self) -> tuple[str, str]:
            parts = urlsplit(self.path)  # absolute form when we are the client's proxy
            return unquote(parts.path), parts.query

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                self.rfile.readline()
                return b"".join(chunks)
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _user(self) -> str | None:
            auth = self.headers.get("Authorization", "")
            if auth.startswith("Basic "):
                try:
                    name, _, key = base64.b64decode(auth[6:]).decode().partition(":")
                except (ValueError, UnicodeDecodeError):
                    return None
                return name if server.users.get(name) == key else None
            if auth.startswith("Bearer "):
                return server.tokens.get(auth[7:])
            return None

        def _send(self, call: Call, status: int, body: bytes, headers: dict[str, str]) -> None:
            call.status = status
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, call: Call, obj: dict, status: int = 200, **headers: str) -> None:
            body = json.dumps(obj).encode()
            self._send(call, status, body, {"Content-Type": "application/json", **headers})

        def _error(self, call: Call, status: int, message: str, **headers: str) -> None:
            # Kaggle's error body; the client raises HTTPError(message) from it.
            self._json(call, {"code": status, "message": message + server.echo}, status, **headers)

        def _start(self, method: str) -> Call:
            path, _ = self._path()
            call = Call(method, path, range=self.headers.get("Range"), user=self._user())
            server.calls.append(call)
            return call

        # ---------------------------------------------------- verbs

        def do_POST(self) -> None:
            call = self._start("POST")
            request = json.loads(self._body() or b"{}")
            if not call.path.startswith(API):
                return self._error(call, 404, "Not found")
            service, _, method = call.path[len(API) :].partition("/")
            fault = server._take_fault(method)
            if fault is not None:
                extra = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                return self._error(call, fault.status, fault.message or "fault", **extra)
            if service == "security.OAuthService" and method == "IntrospectToken":
                user = server.tokens.get(request.get("token", ""))
                return self._json(call, {"active": bool(user), "username": user or ""})
            if service == "users.AccountService" and method == "GenerateAccessToken":
                user = server.refresh_tokens.get(request.get("refreshToken", ""))
                if user is None:
                    return self._error(call, 401, "Unauthenticated")
                token = "KGAT_" + secrets.token_hex(16)
                server.tokens[token] = user
                return self._json(call, {"token": token, "expiresIn": 43200, "userName": user})
            if call.user is None:
                return self._error(call, 401, "Unauthenticated")
            if service != COMPETITIONS:
                return self._error(call, 404, f"no service {service}")
            if request.get("competitionName") != server.competition:
                return self._error(call, 404, "Competition not found")
            if call.user not in server.rules_accepted and method != "GetSubmissionLimits":
                return self._error(call, 403, "You must accept this competition's rules")
            handler = getattr(self, f"_api_{method}", None)
            if handler is None:
                return self._error(call, 404, f"no method {method}")
            return handler(call, request)

        def do_GET(self) -> None:
            call = self._start("GET")
            name = call.path.removeprefix("/files/")
            data = server.body(name) if call.path.startswith("/files/") else None
            if data is None:
                return self._send(call, 404, b"no such file", {"Content-Type": "text/plain"})
            fault = server._take_fault(name)
            if fault is not None and fault.status:
                extra = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                return self._send(call, fault.status, b"unavailable", extra)
            start = 0
            etag = server.etag(data)
            headers = {
                "Content-Type": "application/octet-stream",
                "ETag": etag,
                "Last-Modified": LAST_MODIFIED,
                "Accept-Ranges": "bytes",
            }
            if_range = self.headers.get("If-Range")
            if call.range and call.range.startswith("bytes=") and if_range in (None, etag):
                first = call.range[len("bytes=") :].split("-")[0]
                start = int(first or 0)
                if start >= len(data):
                    return self._send(call, 416, b"", {"Content-Range": f"bytes */{len(data)}"})
                headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            body = data[start:]
            call.status = 206 if start else 200
            self.send_response(call.status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            limit = None
            if fault is not None:
                limit = fault.cut_after if fault.cut_after is not None else fault.stall_after
            try:
                self.wfile.write(body[:limit] if limit is not None else body)
                self.wfile.flush()
                if fault is not None and fault.stall_after is not None:
                    server._released.wait(timeout=120)
                if limit is not None:
                    self.close_connection = True
                    self.connection.shutdown(2)
            except OSError:  # the client went away (killed, or it gave up on this response)
                self.close_connection = True

        def do_PUT(self) -> None:
            call = self._start("PUT")
            data = self._body()
            token = call.path.removeprefix("/upload/")
            fault = server._take_fault("PUT")
            if fault is not None:
                return self._send(call, fault.status, b"", {})
            if token not in server.uploads:
                return self._send(call, 404, b"unknown upload", {})
            server.uploads[token] = data
            return self._send(call, 200, b"", {})

        # ---------------------------------------------------- competition methods

        def _api_ListDataFiles(self, call: Call, request: dict) -> None:
            names = list(server.files)
            start = int(request.get("pageToken") or 0)
            size = min(int(request.get("pageSize") or 20), PAGE_SIZE)
            page = names[start : start + size]
            more = start + size < len(names)
            files = [
                {
                    "ref": n,
                    "name": n,
                    "totalBytes": len(server.files[n]),
                    "creationDate": "2018-09-25T16:00:00.000Z",
                }
                for n in page
            ]
            return self._json(
                call, {"files": files, "nextPageToken": str(start + size) if more else ""}
            )

        def _api_DownloadDataFile(self, call: Call, request: dict) -> None:
            name = request.get("fileName", "")
            if name not in server.files:
                return self._error(call, 404, f"File {name} not found")
            served = name + ".zip" if name in server.zipped else name
            host = self.headers.get("Host", "localhost")
            signature = "X-Goog-Signature=" + secrets.token_hex(8)  # like a signed bucket URL
            location = f"http://{host}/files/{quote(served)}?{signature}"
            call.status = 302
            self.send_response(302)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _api_StartSubmissionUpload(self, call: Call, request: dict) -> None:
            token = "blob-" + secrets.token_hex(8)
            server.uploads[token] = b""
            host = self.headers.get("Host", "localhost")
            url = f"http://{host}/upload/{token}"
            return self._json(call, {"token": token, "createUrl": url})

        def _api_CreateSubmission(self, call: Call, request: dict) -> None:
            token = request.get("blobFileTokens", "")
            if token not in server.uploads:
                return self._error(call, 400, "Unknown blob token")
            data = server.uploads[token]
            public, error = server.score(data)
            submission = Submission(
                ref=next(server._refs),
                file_name="submission.csv",
                description=request.get("submissionDescription", ""),
                data=data,
                date=datetime.now(UTC).replace(tzinfo=None),
                user=call.user or "",
                public_score=public,
                error=error,
                polls_left=server.pending_polls,
            )
            server.submissions.append(submission)
            message = "Successfully submitted to Quick, Draw! Doodle Recognition Challenge"
            reply = {"message": message + server.reply_echo, "ref": submission.ref}
            return self._json(call, reply)

        def _api_ListSubmissions(self, call: Call, request: dict) -> None:
            items = []
            for s in reversed(server.submissions):  # newest first, as Kaggle sorts by date
                status = "PENDING" if s.polls_left > 0 else ("ERROR" if s.error else "COMPLETE")
                s.polls_left -= 1
                item = {
                    "ref": s.ref,
                    "totalBytes": len(s.data),
                    "date": s.date.isoformat(timespec="milliseconds") + "Z",
                    "description": s.description,
                    "fileName": s.file_name,
                    "status": status,
                    "submittedBy": s.user,
                }
                if status == "COMPLETE":
                    item["publicScore"] = s.public_score
                if status == "ERROR":
                    item["errorDescription"] = (s.error or "") + server.reply_echo
                items.append(item)
            return self._json(call, {"submissions": items, "nextPageToken": ""})

        def _api_GetSubmissionLimits(self, call: Call, request: dict) -> None:
            today = len(server.submissions)
            allowed = max(5 - today, 0)
            limits = {"numToday": today, "numTotal": today, "numAllowedNow": allowed}
            return self._json(call, limits)

    return Handler


# ---------------------------------------------------------------- building a competition


def zip_bytes(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name, (2018, 9, 25, 16, 0, 0)), data, compression)
    return buffer.getvalue()


def read_solution(path: Path) -> dict[str, str]:
    rows = path.read_text().splitlines()[1:]
    return dict(line.split(",", 1) for line in rows if line)


def competition_files(kaggle16: Path) -> dict[str, bytes]:
    """What Kaggle lists for the competition: the simplified files the pipeline needs, and the
    raw ones it must never fetch. `train_simplified.zip` holds the real kaggle16 CSVs."""
    train = {p.name: p.read_bytes() for p in sorted((kaggle16 / "train_simplified").glob("*.csv"))}
    test = (kaggle16 / "test_simplified.csv").read_bytes()
    keys = [line.split(",", 1)[0] for line in test.decode().splitlines()[1:]]
    sample = "key_id,word\n" + "".join(f"{k},airplane bicycle calculator\n" for k in keys)
    return {
        "sample_submission.csv": sample.encode(),
        "test_raw.csv": b"key_id,countrycode,drawing\n",  # the raw files: never downloaded
        "test_simplified.csv": test,
        "train_raw.zip": zip_bytes({"cat.ndjson": b"{}\n"}),
        "train_simplified.zip": zip_bytes(train, zipfile.ZIP_STORED),
    }


def client_env(server: KaggleServer | int, home: Path) -> dict[str, str]:
    """Environment variables that send the real client to `server` (see the module doc), or
    to a port where nothing listens: the local API environment, the server as the HTTP proxy,
    and a fresh HOME (no real ~/.kaggle). Credentials are for each test to add."""
    port = server if isinstance(server, int) else server.port
    proxy = f"http://127.0.0.1:{port}"
    return {
        "KAGGLE_API_ENVIRONMENT": "LOCALHOST",
        "HTTP_PROXY": proxy,
        "http_proxy": proxy,
        "HOME": str(home),
    }


CLEARED_ENV = (
    "NO_PROXY",
    "no_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
    "XDG_CONFIG_HOME",
    "KAGGLE_CONFIG_DIR",
    "KAGGLE_USERNAME",
    "KAGGLE_KEY",
    "KAGGLE_API_TOKEN",
)


def subprocess_env(server: KaggleServer | int, home: Path, **extra: str) -> dict[str, str]:
    """os.environ for a subprocess (`dvc repro`, the `kaggle` CLI) talking to `server`, with
    no proxy exceptions and no credentials of the caller's."""
    env = {k: v for k, v in os.environ.items() if k not in CLEARED_ENV}
    return env | client_env(server, home) | extra


def point_client(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], home: Path) -> None:
    """Point the real client in this process where `env` says. The environment is all a new
    process needs; in this one the client may be imported already, and it reads two things
    once, at import: KAGGLE_API_ENVIRONMENT (into `KaggleApi.args`) and where kaggle.json is."""
    for name in CLEARED_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(home))
    # Imported with no credentials in sight: its import-time sign-in makes no request.
    from kaggle.api.kaggle_api_extended import KaggleApi

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config_dir = os.environ.get("KAGGLE_CONFIG_DIR") or str(home / ".kaggle")
    monkeypatch.setattr(KaggleApi, "args", ["--local"])
    monkeypatch.setattr(KaggleApi, "config_dir", config_dir)
    monkeypatch.setattr(KaggleApi, "config", os.path.join(config_dir, "kaggle.json"))


def free_port() -> int:
    """A port nothing listens on (for 'no network')."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def iter_files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            yield path
