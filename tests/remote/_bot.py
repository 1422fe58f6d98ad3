"""A minimal REAPI worker ("bot") for the kiln test engine (started by engine.py).

Run with the engine venv's Python:

    _bot.py --server grpc://127.0.0.1:PORT --casd unix:/path/casd.sock \
            --runner /path/buildbox-run --workdir DIR [--ready-file FILE]

It does what buildbox-worker does, and nothing more:

  * CreateBotSession (Remote Workers API v1test2, BuildGrid's Bots service),
    advertising the OSFamily/ISA that `buildbox-run --capabilities` lists, on
    the primary device, with capacity 1;
  * UpdateBotSession in a loop: a long poll while idle, a keepalive every
    --keepalive seconds while a lease runs;
  * each ACTIVE lease's payload (an Action, or an Action digest) is written to
    a file and handed to `buildbox-run --remote=<casd> --action=... 
    --action-result=...`: buildbox-run stages the input root through
    buildbox-casd (which proxies BuildGrid's CAS), runs the command in
    bubblewrap, captures and uploads the outputs, and writes the ActionResult;
  * the ActionResult goes back in the lease (state COMPLETED, status OK);
    when buildbox-run fails the lease carries an error status instead (see
    classify_failure: DEADLINE_EXCEEDED with the partial result on a
    timeout, FAILED_PRECONDITION with a PreconditionFailure when an input
    blob is missing, INTERNAL, which BuildGrid retries, for crashes and
    connection errors, UNKNOWN otherwise);
  * a lease that disappears from the session (CancelOperation) kills its
    buildbox-run process group.

Logs go to stdout/stderr (engine.py sends them to DIR/bot-N.log); each job's
buildbox-run output is kept in WORKDIR/jobs/N/runner.log.
"""

import argparse
import ctypes
import os
import shutil
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import uuid
from pathlib import Path

import grpc
from google.protobuf import any_pb2

from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2 as re_pb2
from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2_grpc as re_grpc
from buildgrid._protos.google.devtools.remoteworkers.v1test2 import bots_pb2, bots_pb2_grpc, worker_pb2
from buildgrid._protos.google.rpc import code_pb2, error_details_pb2, status_pb2

ACTIVE = bots_pb2.LeaseState.Value("ACTIVE")
PENDING = bots_pb2.LeaseState.Value("PENDING")
COMPLETED = bots_pb2.LeaseState.Value("COMPLETED")
BOT_OK = bots_pb2.BotStatus.Value("OK")

TRANSIENT = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} bot[{os.getpid()}]: {msg}", flush=True)


_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded once: a preexec_fn must not dlopen() after fork()


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Also a preexec_fn: the calling process gets `sig` when its parent dies (PR_SET_PDEATHSIG)."""
    _LIBC.prctl(1, sig)


def grpc_target(url: str) -> str:
    for prefix in ("grpc://", "http://"):
        if url.startswith(prefix):
            return url[len(prefix) :]
    return url


def runner_capabilities(runner: str) -> dict[str, list[str]]:
    out = subprocess.run([runner, "--capabilities"], capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise RuntimeError(f"{runner} --capabilities failed ({out.returncode}): {out.stdout}{out.stderr}")
    props: dict[str, list[str]] = {}
    for line in out.stdout.splitlines():
        if line.startswith("platform:") and "=" in line:
            key, value = line[len("platform:") :].split("=", 1)
            props.setdefault(key, []).append(value)
    return props


MISSING_BLOB = re.compile(r'missing blob with digest "([0-9a-f]+)/([0-9]+)"')
TIMEOUT_EXIT = 142  # buildbox-run's exit status when it killed the command for exceeding Action.timeout


def classify_failure(
    rc: int, log_text: str, action: re_pb2.Action, elapsed: float, have_result: bool, bot_id: str
) -> status_pb2.Status:
    """The lease status for a buildbox-run that did not succeed.

    BuildGrid 0.9.1 requeues a job whose lease reports INTERNAL or UNAVAILABLE
    (5 tries in all: its max-job-attempts setting is not passed through), so
    those codes are kept for failures that another try may fix (the runner
    crashing on a signal, casd unreachable); anything deterministic gets a
    final code.
    """
    lines = [line for line in log_text.strip().splitlines() if line.strip()]
    detail = " | ".join(lines[-3:])[-1500:]
    prefix = f"buildbox-run exited with status {rc} on {bot_id}"
    timeout = action.timeout.seconds + action.timeout.nanos / 1e9
    if have_result and (rc == TIMEOUT_EXIT or (timeout > 0 and elapsed >= timeout * 0.98)):
        return status_pb2.Status(
            code=code_pb2.DEADLINE_EXCEEDED, message=f"action exceeded its timeout of {timeout:g}s ({prefix})"
        )
    missing = MISSING_BLOB.findall(log_text)
    if missing:
        failure = error_details_pb2.PreconditionFailure()
        for h, size in dict.fromkeys(missing):
            failure.violations.add(type="MISSING", subject=f"blobs/{h}/{size}", description="input blob not in CAS")
        status = status_pb2.Status(code=code_pb2.FAILED_PRECONDITION, message=f"{prefix}: {detail}")
        status.details.add().Pack(failure)
        return status
    transient = rc < 0 or any(
        s in log_text for s in ("UNAVAILABLE", "Failed to connect", "failed to connect", "Connection refused")
    )
    return status_pb2.Status(code=code_pb2.INTERNAL if transient else code_pb2.UNKNOWN, message=f"{prefix}: {detail}")


class Job:
    """One lease being run by buildbox-run in a thread."""

    def __init__(self, bot: "Bot", lease: bots_pb2.Lease, seq: int):
        self.bot = bot
        self.lease_id = lease.id
        self.payload = any_pb2.Any()
        self.payload.CopyFrom(lease.payload)
        self.dir = bot.workdir / "jobs" / str(seq)
        self.cancelled = threading.Event()
        self.done = threading.Event()
        self.status = status_pb2.Status(code=code_pb2.INTERNAL, message="job did not finish")
        self.result: re_pb2.ActionResult | None = None
        self.proc: subprocess.Popen | None = None
        self.thread = threading.Thread(target=self._run, name=f"job-{seq}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def cancel(self) -> None:
        self.cancelled.set()
        self._kill()

    def _kill(self) -> None:
        p = self.proc
        if p is not None and p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def _action(self) -> re_pb2.Action:
        action = re_pb2.Action()
        if self.payload.Is(re_pb2.Action.DESCRIPTOR):
            self.payload.Unpack(action)
            return action
        digest = re_pb2.Digest()
        if not self.payload.Is(re_pb2.Digest.DESCRIPTOR):
            raise ValueError(f"unknown lease payload type {self.payload.type_url}")
        self.payload.Unpack(digest)
        instance = self.lease_id.rsplit("/", 1)[0] if "/" in self.lease_id else ""
        resp = self.bot.cas.BatchReadBlobs(
            re_pb2.BatchReadBlobsRequest(instance_name=instance, digests=[digest]), timeout=30
        )
        r = resp.responses[0]
        if r.status.code != code_pb2.OK:
            raise LookupError(f"action {digest.hash}/{digest.size_bytes} not in CAS: {r.status.message}")
        action.ParseFromString(r.data)
        return action

    def _run(self) -> None:
        try:
            self._run_inner()
        except Exception as e:  # report, never hang the lease
            self.status = status_pb2.Status(code=code_pb2.INTERNAL, message=f"bot error: {e}")
            log(f"lease {self.lease_id}: {traceback.format_exc()}")
        finally:
            self.done.set()
            self.bot.wake.set()

    def _run_inner(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        action = self._action()
        action_file = self.dir / "action.bin"
        result_file = self.dir / "result.bin"
        action_file.write_bytes(action.SerializeToString())
        cmd = [
            self.bot.runner,
            f"--remote={self.bot.casd}",
            f"--action={action_file}",
            f"--action-result={result_file}",
            # A workspace per lease: a step may leave read-only directories
            # (Go's module cache does) that buildbox-run cannot clear.
            f"--workspace-path={self.dir / 'ws'}",
            f"--log-level={self.bot.runner_log_level}",
            *self.bot.runner_args,
        ]
        log(f"lease {self.lease_id}: running {' '.join(cmd)}")
        t0 = time.monotonic()
        with open(self.dir / "runner.log", "wb") as runner_log:
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=runner_log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
                cwd=self.dir,
            )
            if self.cancelled.is_set():
                self._kill()
            rc = self.proc.wait()
        elapsed = time.monotonic() - t0
        log(f"lease {self.lease_id}: buildbox-run exited {rc} after {elapsed:.2f}s")
        remove_tree(self.dir / "ws")
        if self.cancelled.is_set():
            self.status = status_pb2.Status(code=code_pb2.CANCELLED, message="cancelled")
            return
        result = re_pb2.ActionResult()
        have_result = False
        if result_file.exists() and result_file.stat().st_size > 0:
            result.ParseFromString(result_file.read_bytes())
            have_result = True
        if rc == 0 and have_result:
            result.execution_metadata.worker = self.bot.bot_id
            self.result = result
            self.status = status_pb2.Status(code=code_pb2.OK)
            return
        if have_result:
            result.execution_metadata.worker = self.bot.bot_id
            self.result = result
        log_text = (self.dir / "runner.log").read_bytes()[-8000:].decode("utf-8", "replace")
        self.status = classify_failure(rc, log_text, action, elapsed, have_result, self.bot.bot_id)


def remove_tree(path: Path) -> None:
    """Remove `path`, making read-only directories writable first."""
    if not path.exists():
        return
    for root, dirs, _files in os.walk(path):
        for d in dirs:
            p = os.path.join(root, d)
            if not os.path.islink(p):
                try:
                    os.chmod(p, 0o755)
                except OSError:
                    pass
    shutil.rmtree(path, ignore_errors=True)


class Bot:
    def __init__(self, args: argparse.Namespace):
        self.server = args.server
        self.casd = args.casd
        self.runner = args.runner
        self.runner_args = args.runner_arg or []
        self.runner_log_level = args.runner_log_level
        self.workdir = Path(args.workdir).resolve()
        self.ready_file = args.ready_file
        self.parent = args.instance
        self.keepalive = args.keepalive
        self.long_poll = args.long_poll
        self.bot_id = args.bot_id or f"kiln-test-bot-{socket.gethostname()}-{uuid.uuid4().hex[:12]}"
        self.extra_properties = [p.split("=", 1) for p in (args.property or [])]
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.jobs: dict[str, Job] = {}
        self.seq = 0
        opts = [
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
            ("grpc.enable_retries", 0),
        ]
        self.channel = grpc.insecure_channel(grpc_target(self.server), options=opts)
        self.bots = bots_pb2_grpc.BotsStub(self.channel)
        self.cas = re_grpc.ContentAddressableStorageStub(self.channel)
        self.session: bots_pb2.BotSession | None = None

    # -- session -----------------------------------------------------------
    def _new_session_proto(self) -> bots_pb2.BotSession:
        props = runner_capabilities(self.runner)
        device = worker_pb2.Device(handle=self.bot_id)
        for key in ("OSFamily", "ISA"):
            for value in props.get(key, []):
                device.properties.add(key=key, value=value)
        for key, value in self.extra_properties:
            device.properties.add(key=key, value=value)
        worker = worker_pb2.Worker(devices=[device])
        worker.configs.add(key="capacity", value="1")
        return bots_pb2.BotSession(bot_id=self.bot_id, status=BOT_OK, worker=worker)

    def create_session(self) -> None:
        proto = self._new_session_proto()
        delay = 0.1
        while not self.stop.is_set():
            try:
                # A deadline under 3.75 s makes BuildGrid answer at once instead of
                # long-polling for a lease (it waits only when 0.8 * deadline >= 3 s).
                self.session = self.bots.CreateBotSession(
                    bots_pb2.CreateBotSessionRequest(parent=self.parent, bot_session=proto), timeout=3.5
                )
                log(f"session {self.session.name} created for {self.bot_id} "
                    f"(properties: {[(p.key, p.value) for p in proto.worker.devices[0].properties]})")
                return
            except grpc.RpcError as e:
                log(f"CreateBotSession: {e.code().name}: {e.details()}; retrying in {delay:.1f}s")
                self.stop.wait(delay)
                delay = min(delay * 2, 2.0)

    def _cancel_all(self, why: str) -> None:
        for lease_id, job in list(self.jobs.items()):
            log(f"lease {lease_id}: cancelled ({why})")
            job.cancel()
        self.jobs.clear()

    def update(self) -> None:
        assert self.session is not None
        session = self.session
        # Report finished jobs.
        for lease in session.leases:
            job = self.jobs.get(lease.id)
            if job is not None and job.done.is_set() and lease.state != COMPLETED:
                lease.state = COMPLETED
                lease.status.CopyFrom(job.status)
                if job.result is not None:
                    lease.result.Pack(job.result)
                else:
                    lease.ClearField("result")
        running = any(not j.done.is_set() for j in self.jobs.values())
        timeout = 3.0 if running else self.long_poll
        resp = self.bots.UpdateBotSession(
            bots_pb2.UpdateBotSessionRequest(name=session.name, bot_session=session), timeout=timeout + 2.0
        )
        # Drop the jobs that were reported as completed.
        reported = {lease.id for lease in session.leases if lease.state == COMPLETED}
        for lease_id in reported:
            self.jobs.pop(lease_id, None)
        self.session = resp
        live_ids = set()
        for lease in resp.leases:
            live_ids.add(lease.id)
            if lease.state == PENDING:
                lease.state = ACTIVE
            if lease.state == ACTIVE and lease.id not in self.jobs:
                self.seq += 1
                job = Job(self, lease, self.seq)
                self.jobs[lease.id] = job
                log(f"lease {lease.id}: accepted")
                job.start()
        for lease_id in list(self.jobs):
            if lease_id not in live_ids:
                log(f"lease {lease_id}: withdrawn by the server, killing it")
                self.jobs.pop(lease_id).cancel()

    def run(self) -> None:
        self.create_session()
        if self.ready_file and self.session is not None:
            Path(self.ready_file).write_text(self.bot_id + "\n")
        delay = 0.1
        while not self.stop.is_set():
            try:
                self.update()
                delay = 0.1
            except grpc.RpcError as e:
                code = e.code()
                if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                    continue
                if code in TRANSIENT:
                    log(f"UpdateBotSession: {code.name}: {e.details()}; retrying in {delay:.1f}s")
                    self.stop.wait(delay)
                    delay = min(delay * 2, 2.0)
                    continue
                # The server no longer knows this session (restarted, expired, closed): start over.
                log(f"UpdateBotSession: {code.name}: {e.details()}; creating a new session")
                self._cancel_all("session lost")
                self.stop.wait(0.2)
                self.create_session()
                continue
            if any(not j.done.is_set() for j in self.jobs.values()):
                # A lease is running: keep the session alive, and report as soon as it ends.
                self.wake.clear()
                if not any(j.done.is_set() for j in self.jobs.values()):
                    self.wake.wait(self.keepalive)
        self._cancel_all("bot stopping")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", required=True, help="grpc://HOST:PORT of BuildGrid's Bots service")
    ap.add_argument("--casd", required=True, help="buildbox-casd endpoint for buildbox-run, e.g. unix:/path/sock")
    ap.add_argument("--runner", required=True, help="path of buildbox-run")
    ap.add_argument("--runner-arg", action="append", help="extra argument for buildbox-run (repeatable)")
    ap.add_argument("--runner-log-level", default="warning")
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--instance", default="", help="parent (instance name) of the bot session")
    ap.add_argument("--bot-id")
    ap.add_argument("--property", action="append", help="extra KEY=VALUE device property to advertise")
    ap.add_argument("--ready-file")
    ap.add_argument("--keepalive", type=float, default=2.0, help="seconds between keepalives while a lease runs")
    ap.add_argument("--long-poll", type=float, default=6.0, help="UpdateBotSession deadline while idle")
    args = ap.parse_args()

    die_with_parent()
    bot = Bot(args)

    def on_signal(sig: int, _frame: object) -> None:
        bot.stop.set()
        bot.wake.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # The long poll blocks the main thread in a gRPC call; run the loop in a thread
    # so a signal stops the bot at once.
    t = threading.Thread(target=bot.run, name="bot", daemon=True)
    t.start()
    while t.is_alive() and not bot.stop.is_set():
        t.join(0.5)
    bot.stop.set()
    bot._cancel_all("bot stopping")
    return 0


if __name__ == "__main__":
    sys.exit(main())
