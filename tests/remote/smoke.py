"""End-to-end smoke check of a REAPI v2 engine (e.g. the one engine.py starts).

    ~/.cache/kiln-test-engine/venv/bin/python tests/remote/smoke.py grpc://127.0.0.1:PORT [--instance NAME]

It uploads a tiny input root and a Command

    /bin/sh -c 'mkdir -p out && echo hi > out/x && cat in/a > out/y'

with output_paths ["out"], platform OSFamily=linux ISA=x86-64 and
PATH=/usr/bin:/bin; calls Execute and waits; prints the ActionResult; reads
the output Tree back and checks out/x and out/y; then calls Execute again and
checks that the answer is a cache hit (cached_result). Exit status 0 when
everything holds, 1 otherwise. Every RPC has a deadline.

The sandbox of buildbox-run (bubblewrap) has the input root as "/" and nothing
of the host, so the input root carries the shell: bin/busybox (a static
busybox, --busybox, default /bin/busybox from Debian's busybox-static) and
bin/sh -> busybox; busybox's shell runs mkdir/cat as built-in applets. The
input root is in/a, bin/busybox, bin/sh.
"""

import argparse
import hashlib
import sys
import time
import uuid

from _venv import reexec_in_engine_venv  # noqa: E402

if __name__ == "__main__":
    reexec_in_engine_venv(__file__)

import grpc  # noqa: E402
from google.protobuf import text_format  # noqa: E402

from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2 as re_pb2  # noqa: E402
from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2_grpc as re_grpc  # noqa: E402
from buildgrid._protos.google.rpc import code_pb2  # noqa: E402



def digest_of(data: bytes) -> re_pb2.Digest:
    return re_pb2.Digest(hash=hashlib.sha256(data).hexdigest(), size_bytes=len(data))


class Client:
    def __init__(self, url: str, instance: str, timeout: float):
        target = url.split("://", 1)[1] if "://" in url else url
        self.channel = grpc.insecure_channel(target)
        self.instance = instance
        self.timeout = timeout
        self.cas = re_grpc.ContentAddressableStorageStub(self.channel)
        self.ac = re_grpc.ActionCacheStub(self.channel)
        self.exe = re_grpc.ExecutionStub(self.channel)
        self.caps = re_grpc.CapabilitiesStub(self.channel)
        self.blobs: dict[str, bytes] = {}

    def add(self, data: bytes) -> re_pb2.Digest:
        d = digest_of(data)
        self.blobs[d.hash] = data
        return d

    def add_msg(self, msg) -> re_pb2.Digest:
        return self.add(msg.SerializeToString(deterministic=True))

    def upload(self) -> None:
        digests = [digest_of(b) for b in self.blobs.values()]
        missing = self.cas.FindMissingBlobs(
            re_pb2.FindMissingBlobsRequest(instance_name=self.instance, blob_digests=digests), timeout=self.timeout
        ).missing_blob_digests
        req = re_pb2.BatchUpdateBlobsRequest(instance_name=self.instance)
        for d in missing:
            req.requests.add(digest=d, data=self.blobs[d.hash])
        if req.requests:
            resp = self.cas.BatchUpdateBlobs(req, timeout=self.timeout)
            bad = [r for r in resp.responses if r.status.code != code_pb2.OK]
            if bad:
                raise RuntimeError(f"BatchUpdateBlobs failed: {bad}")

    def read(self, d: re_pb2.Digest) -> bytes:
        resp = self.cas.BatchReadBlobs(
            re_pb2.BatchReadBlobsRequest(instance_name=self.instance, digests=[d]), timeout=self.timeout
        )
        r = resp.responses[0]
        if r.status.code != code_pb2.OK:
            raise RuntimeError(f"BatchReadBlobs {d.hash}: {r.status}")
        return r.data

    def execute(self, action_digest: re_pb2.Digest, skip_cache: bool = False) -> re_pb2.ExecuteResponse:
        deadline = time.monotonic() + self.timeout
        stream = self.exe.Execute(
            re_pb2.ExecuteRequest(
                instance_name=self.instance, action_digest=action_digest, skip_cache_lookup=skip_cache
            ),
            timeout=self.timeout,
        )
        op = None
        for op in stream:
            if op.done:
                break
            if time.monotonic() > deadline:
                raise TimeoutError("Execute did not finish in time")
        if op is None or not op.done:
            raise RuntimeError(f"Execute stream ended without a finished operation: {op}")
        if op.HasField("error"):
            raise RuntimeError(f"operation {op.name} failed: {op.error}")
        resp = re_pb2.ExecuteResponse()
        op.response.Unpack(resp)
        return resp


def check(cond: bool, what: str, failures: list[str]) -> None:
    print(f"  {'ok  ' if cond else 'FAIL'} {what}")
    if not cond:
        failures.append(what)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("url", help="grpc://127.0.0.1:PORT")
    ap.add_argument("--instance", default="")
    ap.add_argument("--timeout", type=float, default=60.0, help="deadline of each RPC and of each Execute")
    ap.add_argument("--busybox", default="/bin/busybox", help="a statically linked busybox (default /bin/busybox)")
    args = ap.parse_args()
    try:
        busybox = open(args.busybox, "rb").read()
    except OSError as e:
        print(f"SMOKE FAILED: {e}: smoke.py needs a static busybox (apt-get install busybox-static)", file=sys.stderr)
        return 1
    if b"ld-linux" in busybox[:4096] or b"/lib64/ld-" in busybox[:4096]:
        print(f"SMOKE FAILED: {args.busybox} is dynamically linked; it needs busybox-static", file=sys.stderr)
        return 1
    c = Client(args.url, args.instance, args.timeout)
    failures: list[str] = []

    caps = c.caps.GetCapabilities(re_pb2.GetCapabilitiesRequest(instance_name=args.instance), timeout=args.timeout)
    print("GetCapabilities:")
    print(text_format.MessageToString(caps, indent=4).rstrip())

    # A unique input so that the first Execute cannot be a cache hit.
    a_content = f"input a {uuid.uuid4()}\n".encode()
    in_dir = re_pb2.Directory(files=[re_pb2.FileNode(name="a", digest=c.add(a_content))])
    bin_dir = re_pb2.Directory(
        files=[re_pb2.FileNode(name="busybox", digest=c.add(busybox), is_executable=True)],
        symlinks=[re_pb2.SymlinkNode(name="sh", target="busybox")],
    )
    root = re_pb2.Directory(
        directories=[
            re_pb2.DirectoryNode(name="bin", digest=c.add_msg(bin_dir)),
            re_pb2.DirectoryNode(name="in", digest=c.add_msg(in_dir)),
        ]
    )
    root_digest = c.add_msg(root)
    command = re_pb2.Command(
        arguments=["/bin/sh", "-c", "mkdir -p out && echo hi > out/x && cat in/a > out/y"],
        environment_variables=[re_pb2.Command.EnvironmentVariable(name="PATH", value="/usr/bin:/bin")],
        output_paths=["out"],
        platform=re_pb2.Platform(
            properties=[
                re_pb2.Platform.Property(name="ISA", value="x86-64"),
                re_pb2.Platform.Property(name="OSFamily", value="linux"),
            ]
        ),
    )
    action = re_pb2.Action(
        command_digest=c.add_msg(command), input_root_digest=root_digest, platform=command.platform
    )
    action.timeout.seconds = 60
    action_digest = c.add_msg(action)
    c.upload()

    t0 = time.monotonic()
    first = c.execute(action_digest)
    t1 = time.monotonic()
    print(f"\nExecute #1 ({t1 - t0:.2f}s): status={first.status.code} cached_result={first.cached_result}")
    print(text_format.MessageToString(first.result, indent=4).rstrip())
    r = first.result
    check(first.status.code == code_pb2.OK, "execute status OK", failures)
    check(r.exit_code == 0, f"exit code 0 (got {r.exit_code})", failures)
    check(not first.cached_result, "first execution is not a cache hit", failures)
    if r.stderr_digest.size_bytes:
        print("stderr:", c.read(r.stderr_digest).decode(errors="replace"))
    out = [d for d in r.output_directories if d.path == "out"]
    check(len(out) == 1, "output directory 'out' returned", failures)
    if out:
        tree = re_pb2.Tree()
        tree.ParseFromString(c.read(out[0].tree_digest))
        files = {f.name: f for f in tree.root.files}
        check(set(files) == {"x", "y"}, f"out/ holds x and y (got {sorted(files)})", failures)
        if "x" in files:
            check(c.read(files["x"].digest) == b"hi\n", "out/x == 'hi\\n'", failures)
        if "y" in files:
            check(c.read(files["y"].digest) == a_content, "out/y == in/a", failures)

    t0 = time.monotonic()
    second = c.execute(action_digest)
    t1 = time.monotonic()
    print(f"\nExecute #2 ({t1 - t0:.2f}s): status={second.status.code} cached_result={second.cached_result}")
    check(second.cached_result, "second execution is an action-cache hit", failures)
    check(second.result.output_directories == r.output_directories, "cached result has the same outputs", failures)

    ac = c.ac.GetActionResult(
        re_pb2.GetActionResultRequest(instance_name=args.instance, action_digest=action_digest), timeout=args.timeout
    )
    check(ac.exit_code == 0 and ac.output_directories == r.output_directories, "GetActionResult returns it", failures)

    print(f"\n{'SMOKE OK' if not failures else 'SMOKE FAILED: ' + '; '.join(failures)}")
    return 0 if not failures else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except grpc.RpcError as e:
        print(f"SMOKE FAILED: RPC error {e.code().name}: {e.details()}", file=sys.stderr)
        sys.exit(1)
