"""Self-check of hostile_engine.py: runs it in every mode and plays the client.

    python3 tests/remote/hostile_check.py        # exit 0 = every mode answers as documented

For each mode: GetCapabilities, GetActionResult (NOT_FOUND), upload (batch and
ByteStream), Execute with working_directory "work/src" and output_paths
["../../out", "../../work"], then the mode's lie is looked for in the answer
and in what the CAS serves; the call log must carry the bearer token.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
try:
    import buildgrid  # noqa: F401
except ImportError:  # the engine venv's Python, as hostile_engine.py does it
    py = Path(os.environ.get("KILN_REMOTE_ENGINE_HOME") or Path.home() / ".cache/kiln-test-engine") / "venv/bin/python"
    if os.environ.get("KILN_ENGINE_REEXEC"):
        sys.exit(f"BuildGrid is not importable by {py}")
    os.environ["KILN_ENGINE_REEXEC"] = "1"
    os.execv(str(py), [str(py), __file__, *sys.argv[1:]])

import grpc  # noqa: E402

import hostile_engine as he  # noqa: E402

re_pb2, re_grpc, bs_pb2 = he.re_pb2, he.re_grpc, he.bytestream_pb2
TOKEN = "Bearer check-token"
T = 10  # seconds, every RPC


def start(mode: str, log: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    p = subprocess.Popen(
        [sys.executable, str(HERE / "hostile_engine.py"), "--mode", mode, "--log", str(log), *extra],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    line = p.stdout.readline()
    assert line.startswith("READY grpc://127.0.0.1:"), line
    return p, line.split("://", 1)[1].strip()


def run(mode: str, tmp: Path, *extra: str) -> None:
    log = tmp / f"{mode}.jsonl"
    proc, target = start(mode, log, *extra)
    md = [("authorization", TOKEN)]
    ch = grpc.insecure_channel(target)
    cas, ac = re_grpc.ContentAddressableStorageStub(ch), re_grpc.ActionCacheStub(ch)
    exe, bs = re_grpc.ExecutionStub(ch), he.bytestream_pb2_grpc.ByteStreamStub(ch)
    ops = he.operations_pb2_grpc.OperationsStub(ch)
    try:
        caps = re_grpc.CapabilitiesStub(ch).GetCapabilities(re_pb2.GetCapabilitiesRequest(), timeout=T, metadata=md)
        assert caps.cache_capabilities.max_batch_total_size_bytes == 4 << 20 and caps.execution_capabilities.exec_enabled
        cmd = re_pb2.Command(arguments=["/bin/sh"], working_directory="work/src", output_paths=["../../out", "../../work"])
        cmd_b = cmd.SerializeToString()
        action_b = re_pb2.Action(command_digest=he.digest_of(cmd_b)).SerializeToString()
        ad = he.digest_of(action_b)
        if mode == "unavailable":
            for _ in range(3):
                try:
                    ac.GetActionResult(re_pb2.GetActionResultRequest(action_digest=ad), timeout=T, metadata=md)
                    raise AssertionError("no UNAVAILABLE")
                except grpc.RpcError as e:
                    assert e.code() == grpc.StatusCode.UNAVAILABLE, e
            assert len(log.read_text().splitlines()) == 4  # GetCapabilities + 3
            return
        try:
            ac.GetActionResult(re_pb2.GetActionResultRequest(action_digest=ad), timeout=T, metadata=md)
            raise AssertionError("action cache hit")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.NOT_FOUND, e
        missing = cas.FindMissingBlobs(re_pb2.FindMissingBlobsRequest(blob_digests=[ad]), timeout=T, metadata=md)
        assert list(missing.missing_blob_digests) == [ad]
        req = re_pb2.BatchUpdateBlobsRequest()
        req.requests.add(digest=ad, data=action_b)
        assert cas.BatchUpdateBlobs(req, timeout=T, metadata=md).responses[0].status.code == 0
        cd = he.digest_of(cmd_b)  # the Command through ByteStream, in two chunks
        name = f"uploads/x/blobs/{cd.hash}/{cd.size_bytes}"
        chunks = [bs_pb2.WriteRequest(resource_name=name, data=cmd_b[:5]),
                  bs_pb2.WriteRequest(write_offset=5, data=cmd_b[5:], finish_write=True)]
        assert bs.Write(iter(chunks), timeout=T, metadata=md).committed_size == len(cmd_b)

        stream = exe.Execute(re_pb2.ExecuteRequest(action_digest=ad), timeout=60, metadata=md)
        if mode == "hang":
            t0, got = time.monotonic(), [next(stream), next(stream), next(stream)]
            assert all(not o.done and o.name == got[0].name for o in got) and time.monotonic() - t0 > 1.5
            ops.CancelOperation(he.operations_pb2.CancelOperationRequest(name=got[0].name), timeout=T, metadata=md)
            stream.cancel()
            assert any(c["method"].endswith("/CancelOperation") and got[0].name in c.get("request", "")
                       for c in map(json.loads, log.read_text().splitlines())), "cancel not logged"
            return
        op = list(stream)[-1]
        assert op.done
        resp = re_pb2.ExecuteResponse()
        op.response.Unpack(resp)
        r = resp.result
        assert r.exit_code == 0 and r.stdout_raw == b"hostile\n", r
        dirs = {d.path: d.tree_digest for d in r.output_directories}

        def read(d):  # BatchReadBlobs and ByteStream must serve the same bytes
            a = cas.BatchReadBlobs(re_pb2.BatchReadBlobsRequest(digests=[d]), timeout=T, metadata=md).responses[0].data
            rr = bs_pb2.ReadRequest(resource_name=f"blobs/{d.hash}/{d.size_bytes}")
            b = b"".join(c.data for c in bs.Read(rr, timeout=T, metadata=md))
            assert a == b
            return a

        trees = {p: re_pb2.Tree.FromString(read(t)) for p, t in dirs.items()}
        files = [f for t in trees.values() for f in t.root.files]
        if mode == "ok":
            assert set(dirs) == {"../../out", "../../work"} and all(t == re_pb2.Tree(root=re_pb2.Directory()) for t in trees.values())
        elif mode == "escape":
            assert "../../../etc" in dirs and he.resolve("work/src", "../../../etc") is None
        elif mode == "absolute":
            assert [f.path for f in r.output_files] == ["/etc/passwd"]
        elif mode == "dotdot-name":
            t = trees["../../out"]
            assert [n.name for n in t.root.directories] == [".."] and t.children[0].files[0].name == "passwd"
        elif mode == "missing-output":
            assert set(dirs) == {"../../work"}, dirs
        elif mode in ("bad-digest", "truncated"):
            assert files
            for f in files:
                data = read(f.digest)
                assert he.digest_of(data) != f.digest
                assert (len(data) == f.digest.size_bytes) == (mode == "bad-digest"), (len(data), f.digest)
        calls = [json.loads(line) for line in log.read_text().splitlines()]
        assert all(c["metadata"].get("authorization") == TOKEN for c in calls), calls[:2]
        assert any(c["method"].endswith("/Execute") for c in calls)
    finally:
        ch.close()
        proc.stdin.close()  # EOF stops it
        assert proc.wait(timeout=10) == 0


def main() -> int:
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        cases = [(m,) for m in he.MODES] + [("bad-digest", "--file-size", str(3 << 20)), ("truncated", "--file-size", str(3 << 20))]
        for mode, *extra in cases:
            try:
                run(mode, Path(tmp), *extra)
                print(f"ok    {mode} {' '.join(extra)}")
            except Exception as e:  # noqa: BLE001
                failed += 1
                print(f"FAIL  {mode} {' '.join(extra)}: {e!r}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
