"""A hostile REAPI v2 server for kiln's tests: every action gets a crafted answer.

    python3 tests/remote/hostile_engine.py --mode MODE [--log calls.jsonl] [--file-size N]

Binds 127.0.0.1 on a port the kernel picks, prints exactly one line on stdout,

    READY grpc://127.0.0.1:PORT

and serves until SIGTERM/SIGINT or until stdin reaches end-of-file (stdin is
watched only when it is a pipe, socket or terminal, as in engine.py). Without
BuildGrid importable it re-runs itself with the engine venv's Python
(bash tests/remote/install.sh makes it); only BuildGrid's generated stubs and
grpcio are used.

Services, for any instance name: Capabilities (sha256, 4 MiB batches, exec
enabled), ContentAddressableStorage (FindMissingBlobs reports what it does not
hold; uploads kept in memory), ByteStream Read/Write, ActionCache
(GetActionResult is always NOT_FOUND, so the client uploads and Executes),
Execution (Execute, WaitExecution) and Operations (Get/CancelOperation).

Execute reads the Action and Command the client uploaded and answers with an
ActionResult (exit 0, stdout_raw b"hostile\\n") built from the Command's
output_paths (or, for old clients, output_directories/output_files) as MODE says:

  ok              each output path is an empty directory (honest baseline)
  escape          the outputs, plus a directory at ../ x (depth(wd)+1) + etc
  dotdot-name     each output's tree has a directory named ".." holding a file
  absolute        the outputs, plus output_files "/etc/passwd"
  bad-digest      each output's tree holds a file whose served bytes differ from
                  its digest (same length)
  truncated       the same, the served bytes shorter than the digest's size
  missing-output  the output resolving to /out (else the last one) is left out
  hang            Execute streams a named, not-done Operation every second and
                  never finishes (until the client goes, or --hang-seconds)
  unavailable     every RPC but GetCapabilities fails with UNAVAILABLE

--file-size sets the crafted file's size (default 64 bytes; above 2 MiB the
client has to fetch it through ByteStream Read instead of BatchReadBlobs).

--log FILE gets one JSON object per call, written when the call arrives:
{"n", "t", "method" (e.g. "/google.longrunning.Operations/CancelOperation"),
"metadata" (headers, e.g. "authorization"), "request" (unary calls: the
message as one line of text, cut at 400 characters; BatchUpdateBlobs:
its digests only)}.
"""

import argparse
import hashlib
import json
import os
import signal
import stat
import sys
import threading
import time
import uuid
from concurrent import futures

MODES = ["ok", "escape", "dotdot-name", "absolute", "bad-digest", "truncated", "missing-output", "hang", "unavailable"]

from _venv import reexec_in_engine_venv  # noqa: E402

if __name__ == "__main__":
    reexec_in_engine_venv(__file__)

import grpc  # noqa: E402
from google.protobuf import empty_pb2, text_format  # noqa: E402

from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2 as re_pb2  # noqa: E402
from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2_grpc as re_grpc  # noqa: E402
from buildgrid._protos.build.bazel.semver import semver_pb2  # noqa: E402
from buildgrid._protos.google.bytestream import bytestream_pb2, bytestream_pb2_grpc  # noqa: E402
from buildgrid._protos.google.longrunning import operations_pb2, operations_pb2_grpc  # noqa: E402
from buildgrid._protos.google.rpc import code_pb2, status_pb2  # noqa: E402


MAX_BATCH = 4 << 20
CHUNK = 64 << 10


def digest_of(data: bytes) -> re_pb2.Digest:
    return re_pb2.Digest(hash=hashlib.sha256(data).hexdigest(), size_bytes=len(data))


def resolve(wd: str, path: str) -> str | None:
    """`path` relative to `wd` as an absolute sandbox path; None if it climbs out."""
    parts = [p for p in wd.split("/") if p]
    for c in path.split("/"):
        if c == "..":
            if not parts:
                return None
            parts.pop()
        elif c not in ("", "."):
            parts.append(c)
    return "/" + "/".join(parts)


class Engine:
    """The state every service shares: the in-memory CAS, operations, the log."""

    def __init__(self, mode: str, log_path: str | None, file_size: int, hang_seconds: float):
        self.mode = mode
        self.file_size = file_size
        self.hang_seconds = hang_seconds
        self.lock = threading.Lock()
        self.cas: dict[str, bytes] = {}  # hash -> the true bytes
        self.served: dict[str, bytes] = {}  # hash -> the (lying) bytes served instead
        self.ops: dict[str, operations_pb2.Operation] = {}
        self.cancelled: list[str] = []
        self.calls = 0
        self.stopping = threading.Event()  # set at shutdown: `hang` streams end
        self.log_file = open(log_path, "a", buffering=1) if log_path else None

    def log(self, method: str, metadata, request) -> None:
        md = {}
        for k, v in metadata or ():
            md[k] = v if isinstance(v, str) else v.hex()  # "-bin" headers are bytes
        with self.lock:
            self.calls += 1
            entry = {"n": self.calls, "t": round(time.time(), 3), "method": method, "metadata": md}
            if isinstance(request, re_pb2.BatchUpdateBlobsRequest):  # the digests, not the bytes
                request = re_pb2.FindMissingBlobsRequest(blob_digests=[r.digest for r in request.requests])
            if request is not None:
                entry["request"] = text_format.MessageToString(request, as_one_line=True)[:400]
            if self.log_file:
                self.log_file.write(json.dumps(entry) + "\n")
                self.log_file.flush()

    def put(self, data: bytes) -> re_pb2.Digest:
        d = digest_of(data)
        with self.lock:
            self.cas[d.hash] = data
        return d

    def get(self, hash_: str) -> bytes | None:
        """What a read of `hash_` is served (the lie, when there is one)."""
        with self.lock:
            return self.served.get(hash_, self.cas.get(hash_))

    def tree(self, root: re_pb2.Directory, children=()) -> re_pb2.Digest:
        return self.put(re_pb2.Tree(root=root, children=list(children)).SerializeToString(deterministic=True))

    def crafted(self, command: re_pb2.Command, salt: str) -> re_pb2.ActionResult:
        """The ActionResult MODE gives for `command`."""
        paths = list(command.output_paths) or [*command.output_directories, *command.output_files]
        wd = command.working_directory
        result = re_pb2.ActionResult(exit_code=0, stdout_raw=b"hostile\n", stdout_digest=self.put(b"hostile\n"))
        empty = self.tree(re_pb2.Directory())
        # A file no client has seen (so it cannot be copied from what it holds).
        body = (f"hostile {salt} ".encode() * (self.file_size // 8 + 2))[: self.file_size]
        if self.mode == "missing-output" and paths:
            out = [p for p in paths if resolve(wd, p) == "/out"] or paths[-1:]
            paths = [p for p in paths if p not in out]
        for p in paths:
            tree = empty
            if self.mode == "dotdot-name":
                inner = re_pb2.Directory(files=[re_pb2.FileNode(name="passwd", digest=self.put(body))])
                node = re_pb2.DirectoryNode(name="..", digest=self.put(inner.SerializeToString(deterministic=True)))
                tree = self.tree(re_pb2.Directory(directories=[node]), [inner])
            elif self.mode in ("bad-digest", "truncated"):
                d = digest_of(body)
                with self.lock:  # the true bytes are never served
                    if self.mode == "bad-digest":
                        self.served[d.hash] = bytes(b ^ 0x20 for b in body)
                    else:
                        self.served[d.hash] = body[: len(body) // 2]
                tree = self.tree(re_pb2.Directory(files=[re_pb2.FileNode(name="x", digest=d)]))
            result.output_directories.add(path=p, tree_digest=tree)
        if self.mode == "escape":
            depth = len([c for c in wd.split("/") if c])
            inner = re_pb2.Directory(files=[re_pb2.FileNode(name="passwd", digest=self.put(body))])
            result.output_directories.add(path="../" * (depth + 1) + "etc", tree_digest=self.tree(inner))
        elif self.mode == "absolute":
            result.output_files.add(path="/etc/passwd", digest=self.put(body))
        return result


def done_op(name: str, action: re_pb2.Digest, response: re_pb2.ExecuteResponse) -> operations_pb2.Operation:
    op = operations_pb2.Operation(name=name, done=True)
    op.metadata.Pack(re_pb2.ExecuteOperationMetadata(stage=re_pb2.ExecutionStage.COMPLETED, action_digest=action))
    op.response.Pack(response)
    return op


class Servicer(
    re_grpc.CapabilitiesServicer,
    re_grpc.ContentAddressableStorageServicer,
    re_grpc.ActionCacheServicer,
    re_grpc.ExecutionServicer,
    bytestream_pb2_grpc.ByteStreamServicer,
    operations_pb2_grpc.OperationsServicer,
):
    def __init__(self, engine: Engine):
        self.e = engine

    # Capabilities
    def GetCapabilities(self, request, context):
        sha = re_pb2.DigestFunction.SHA256
        return re_pb2.ServerCapabilities(
            cache_capabilities=re_pb2.CacheCapabilities(
                digest_functions=[sha],
                action_cache_update_capabilities=re_pb2.ActionCacheUpdateCapabilities(update_enabled=False),
                max_batch_total_size_bytes=MAX_BATCH,
            ),
            execution_capabilities=re_pb2.ExecutionCapabilities(
                digest_function=sha, digest_functions=[sha], exec_enabled=True
            ),
            low_api_version=semver_pb2.SemVer(major=2, minor=0),
            high_api_version=semver_pb2.SemVer(major=2, minor=2),
        )

    # ContentAddressableStorage
    def FindMissingBlobs(self, request, context):
        with self.e.lock:
            missing = [d for d in request.blob_digests if d.hash not in self.e.cas and d.hash not in self.e.served]
        return re_pb2.FindMissingBlobsResponse(missing_blob_digests=missing)

    def BatchUpdateBlobs(self, request, context):
        resp = re_pb2.BatchUpdateBlobsResponse()
        for r in request.requests:
            ok = digest_of(r.data) == r.digest
            if ok:
                self.e.put(r.data)
            code = code_pb2.OK if ok else code_pb2.INVALID_ARGUMENT
            resp.responses.add(digest=r.digest, status=status_pb2.Status(code=code))
        return resp

    def BatchReadBlobs(self, request, context):
        resp = re_pb2.BatchReadBlobsResponse()
        for d in request.digests:
            data = self.e.get(d.hash)
            if data is None:
                resp.responses.add(digest=d, status=status_pb2.Status(code=code_pb2.NOT_FOUND, message="no blob"))
            else:
                resp.responses.add(digest=d, data=data, status=status_pb2.Status(code=code_pb2.OK))
        return resp

    def GetTree(self, request, context):
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "hostile: no GetTree")

    # ByteStream: "{instance/}blobs/{hash}/{size}", "{instance/}uploads/{uuid}/blobs/{hash}/{size}"
    @staticmethod
    def _blob(resource: str, context) -> tuple[str, int]:
        parts = resource.split("/")
        if "blobs" not in parts or len(parts) < parts.index("blobs") + 3:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad resource name {resource!r}")
        i = parts.index("blobs")
        try:
            return parts[i + 1], int(parts[i + 2])
        except ValueError:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad size in {resource!r}")

    def Read(self, request, context):
        hash_, _size = self._blob(request.resource_name, context)
        data = self.e.get(hash_)
        if data is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no blob {hash_}")
        end = len(data) if request.read_limit <= 0 else min(len(data), request.read_offset + request.read_limit)
        for off in range(request.read_offset, end, CHUNK):
            yield bytestream_pb2.ReadResponse(data=data[off : min(off + CHUNK, end)])

    def Write(self, request_iterator, context):
        resource, buf = None, bytearray()
        for req in request_iterator:
            resource = resource or req.resource_name
            if req.write_offset != len(buf):
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "write_offset out of order")
            buf += req.data
            if req.finish_write:
                break
        hash_, size = self._blob(resource or "", context)
        if digest_of(bytes(buf)) != re_pb2.Digest(hash=hash_, size_bytes=size):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "data does not match the resource's digest")
        self.e.put(bytes(buf))
        return bytestream_pb2.WriteResponse(committed_size=len(buf))

    def QueryWriteStatus(self, request, context):
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "hostile: no QueryWriteStatus")

    # ActionCache: never a hit, nothing stored.
    def GetActionResult(self, request, context):
        context.abort(grpc.StatusCode.NOT_FOUND, "hostile: not in the action cache")

    def UpdateActionResult(self, request, context):
        return request.action_result

    # Execution
    def _hang(self, name: str, action: re_pb2.Digest, context):
        """A not-done Operation now and every second, until the client goes."""
        op = operations_pb2.Operation(name=name, done=False)
        op.metadata.Pack(re_pb2.ExecuteOperationMetadata(stage=re_pb2.ExecutionStage.EXECUTING, action_digest=action))
        deadline = time.monotonic() + self.e.hang_seconds
        while context.is_active() and time.monotonic() < deadline and not self.e.stopping.is_set():
            yield op
            self.e.stopping.wait(1.0)
        context.abort(grpc.StatusCode.UNAVAILABLE, "hostile: stopped hanging")

    def Execute(self, request, context):
        name = f"hostile/{self.e.mode}/{uuid.uuid4()}"
        action_d = request.action_digest
        if self.e.mode == "hang":
            yield from self._hang(name, action_d, context)
            return
        missing = []
        action = command = None
        raw = self.e.get(action_d.hash)
        if raw is None:
            missing.append(action_d.hash)
        else:
            action = re_pb2.Action.FromString(raw)
            raw = self.e.get(action.command_digest.hash)
            if raw is None:
                missing.append(action.command_digest.hash)
            else:
                command = re_pb2.Command.FromString(raw)
        if command is None:
            status = status_pb2.Status(code=code_pb2.FAILED_PRECONDITION, message=f"missing blobs {missing}")
            response = re_pb2.ExecuteResponse(status=status)
        else:
            response = re_pb2.ExecuteResponse(result=self.e.crafted(command, action_d.hash[:16]))
        op = done_op(name, action_d, response)
        with self.e.lock:
            self.e.ops[name] = op
        yield op

    def WaitExecution(self, request, context):
        if self.e.mode == "hang":
            yield from self._hang(request.name, re_pb2.Digest(), context)
            return
        with self.e.lock:
            op = self.e.ops.get(request.name)
        if op is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no operation {request.name!r}")
        yield op

    # Operations
    def GetOperation(self, request, context):
        with self.e.lock:
            op = self.e.ops.get(request.name)
        if op is None:
            if self.e.mode == "hang":
                return operations_pb2.Operation(name=request.name, done=False)
            context.abort(grpc.StatusCode.NOT_FOUND, f"no operation {request.name!r}")
        return op

    def CancelOperation(self, request, context):
        with self.e.lock:
            self.e.cancelled.append(request.name)
        print(f"hostile_engine: CancelOperation {request.name}", file=sys.stderr, flush=True)
        return empty_pb2.Empty()


class Gate(grpc.ServerInterceptor):
    """Logs each call as it arrives; in mode `unavailable`, refuses it."""

    KINDS = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")

    def __init__(self, engine: Engine):
        self.e = engine

    def intercept_service(self, continuation, details):
        handler = continuation(details)
        if handler is None:  # unknown method: UNIMPLEMENTED, still logged
            self.e.log(details.method, details.invocation_metadata, None)
            return None
        kind = next(k for k in self.KINDS if getattr(handler, k) is not None)
        inner, method, md = getattr(handler, kind), details.method, details.invocation_metadata
        refuse = self.e.mode == "unavailable" and not method.endswith("/GetCapabilities")

        def behavior(request, context):
            self.e.log(method, md, request if kind.startswith("unary") else None)
            if refuse:
                context.abort(grpc.StatusCode.UNAVAILABLE, "hostile: unavailable")
            return inner(request, context)

        factory = getattr(grpc, f"{kind}_rpc_method_handler")
        return factory(
            behavior, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", required=True, choices=MODES)
    ap.add_argument("--log", help="JSON-lines file: one object per call")
    ap.add_argument("--file-size", type=int, default=64, help="bytes of the crafted file (default 64)")
    ap.add_argument("--hang-seconds", type=float, default=600.0, help="how long `hang` streams at most")
    args = ap.parse_args()

    engine = Engine(args.mode, args.log, max(args.file_size, 2), args.hang_seconds)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=32),
        interceptors=[Gate(engine)],
        options=[("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)],
    )
    svc = Servicer(engine)
    re_grpc.add_CapabilitiesServicer_to_server(svc, server)
    re_grpc.add_ContentAddressableStorageServicer_to_server(svc, server)
    re_grpc.add_ActionCacheServicer_to_server(svc, server)
    re_grpc.add_ExecutionServicer_to_server(svc, server)
    bytestream_pb2_grpc.add_ByteStreamServicer_to_server(svc, server)
    operations_pb2_grpc.add_OperationsServicer_to_server(svc, server)
    port = server.add_insecure_port("127.0.0.1:0")
    if not port:
        print("ERROR: could not bind 127.0.0.1", file=sys.stderr)
        return 1
    server.start()

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    mode = os.fstat(0).st_mode
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(0):

        def watch_stdin() -> None:
            while os.read(0, 4096):
                pass
            stop.set()

        threading.Thread(target=watch_stdin, daemon=True).start()

    print(f"READY grpc://127.0.0.1:{port}", flush=True)
    while not stop.wait(0.5):
        pass
    engine.stopping.set()
    server.stop(grace=1).wait(timeout=5)
    if engine.cancelled:
        print(f"hostile_engine: cancelled {engine.cancelled}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
