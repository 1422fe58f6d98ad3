"""Start a real REAPI v2 remote-execution engine on 127.0.0.1 for kiln's tests.

Install first (idempotent, prints nothing when done):  bash tests/remote/install.sh
Then, with the engine venv's Python:

    ~/.cache/kiln-test-engine/venv/bin/python tests/remote/engine.py --dir DIR [--workers N]

What it starts, all on this machine, nothing on a fixed port:

  * a fresh PostgreSQL cluster in DIR/pgdata (initdb; Unix socket only, no
    TCP), which BuildGrid's scheduler needs; as root it runs inside a user
    namespace (postgres refuses to run as uid 0);
  * BuildGrid 0.9.1 on grpc://127.0.0.1:<free port>: Execution, Operations,
    ContentAddressableStorage, ActionCache (clients may write it), ByteStream,
    Capabilities and the Bots service, for the instance names "" and "main"
    (--instance adds or replaces the second name); CAS on disk in DIR/cas,
    action cache in memory;
  * N workers (default 1): each one buildbox-casd (a CAS proxy with its own
    cache in DIR/bot-N/) and one bot (_bot.py) that takes leases from the Bots
    service and runs them with buildbox-run (bubblewrap).

When everything answers it prints exactly one line on stdout,

    READY grpc://127.0.0.1:PORT

and flushes. It then runs until SIGTERM/SIGINT, or until its stdin reaches
end-of-file (so a test harness that dies, closing the pipe, does not leak the
engine), then stops every child by process group and exits 0. Without a pipe
or terminal on stdin (e.g. </dev/null) stdin is not watched. SIGHUP restarts
the BuildGrid process on the same port (the database and CAS are kept, the
in-memory action cache is not).

Start-up failures print `ERROR: ...` with the tail of the relevant log on
stderr and exit 1. Logs: DIR/engine.log, DIR/initdb.log, DIR/postgres.log,
DIR/buildgrid.log, DIR/casd-N.log, DIR/bot-N.log, DIR/bot-N/jobs/*/runner.log.
Process ids for fault tests: DIR/engine.json (and DIR/buildgrid.pid).
"""

import argparse
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

from _venv import reexec_in_engine_venv

HERE = Path(__file__).resolve().parent
ENGINE_HOME = Path(os.environ.get("KILN_REMOTE_ENGINE_HOME") or Path.home() / ".cache" / "kiln-test-engine")

# Platform property keys BuildGrid accepts without matching them to workers;
# they are passed through to buildbox-run, which understands them. Any other
# key than these and OSFamily/ISA (which are matched) makes Execute fail with
# FAILED_PRECONDITION ("Unregistered platform property").
DEFAULT_WILDCARD_KEYS = [
    "network",
    "unixUID",
    "unixGID",
    "capability",
    "chrootRootDigest",
    "chrootTreeDigest",
    "remoteApisSocketPath",
]


class StartupError(Exception):
    pass


_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded once: nothing may be imported or dlopen()ed after fork()


def die_with_parent(sig: int) -> "callable":
    """A preexec_fn: the child gets `sig` when the engine dies (PR_SET_PDEATHSIG)."""

    def fn() -> None:
        _LIBC.prctl(1, sig)

    return fn


def tail(path: Path, n: int = 40) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no {path})"
    return "\n".join(f"    {line}" for line in lines[-n:])


class Child:
    def __init__(self, name: str, argv: list[str], log: Path, stop_signal: int, pdeath: int, **kw):
        self.name = name
        self.argv = argv
        self.log = log
        self.stop_signal = stop_signal
        self.expected_exit = False
        with open(log, "ab") as f:
            f.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}\n".encode())
            f.flush()
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=f,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent(pdeath),
                **kw,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self, timeout: float = 10.0) -> None:
        self.expected_exit = True
        if self.alive():
            self.signal_group(self.stop_signal)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        # Whatever is left in the group (the child itself, or its own children).
        self.signal_group(signal.SIGKILL)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass


class Engine:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.dir = Path(args.dir).resolve()
        self.home = Path(args.engine_home).resolve()
        self.bin = self.home / "bin"
        self.python = sys.executable
        self.children: list[Child] = []
        self.postgres: Child | None = None
        self.buildgrid: Child | None = None
        self.casds: list[Child] = []
        self.bots: list[Child] = []
        self.port: int | None = None
        self.tmp_sock_dir: Path | None = None
        self.stop_event = threading.Event()
        self.restart_requested = False
        self.deadline = time.monotonic() + args.timeout
        self.instances = [""] + [name for name in args.instance if name != ""]
        self.t0 = time.monotonic()

    # -- helpers -----------------------------------------------------------
    def log(self, msg: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} [{time.monotonic() - self.t0:6.2f}s] {msg}\n"
        with open(self.dir / "engine.log", "a", encoding="utf-8") as f:
            f.write(line)
        if self.args.verbose:
            sys.stderr.write("kiln-engine: " + line)
            sys.stderr.flush()

    def spawn(self, name: str, argv: list[str], log: Path, stop_signal=signal.SIGTERM, pdeath=signal.SIGTERM, **kw):
        child = Child(name, argv, log, stop_signal, pdeath, **kw)
        self.children.append(child)
        self.log(f"started {name} (pid {child.pid}): {' '.join(argv)}")
        return child

    def wait_for(self, what: str, check, child: Child | None, log: Path | None, step: float = 0.05):
        while True:
            if self.stop_event.is_set():
                raise StartupError(f"stopped while waiting for {what}")
            if check():
                return
            if child is not None and not child.alive():
                raise StartupError(
                    f"{child.name} exited with status {child.proc.returncode} while waiting for {what}; "
                    f"last lines of {log}:\n{tail(log) if log else ''}"
                )
            if time.monotonic() > self.deadline:
                raise StartupError(
                    f"timed out after {self.args.timeout:.0f}s waiting for {what}"
                    + (f"; last lines of {log}:\n{tail(log)}" if log else "")
                )
            time.sleep(step)

    def find_tool(self, name: str, candidates: list[Path], hint: str) -> str:
        for c in candidates:
            if c.is_file() and os.access(c, os.X_OK):
                return str(c)
        found = shutil.which(name)
        if found:
            return found
        raise StartupError(f"{name} not found (looked in {', '.join(str(c.parent) for c in candidates)} and PATH); {hint}")

    def pg_bindir(self) -> Path:
        if self.args.pg_bindir:
            return Path(self.args.pg_bindir)
        if os.environ.get("KILN_PG_BINDIR"):
            return Path(os.environ["KILN_PG_BINDIR"])
        versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
        if versions:
            return versions[-1].parent
        pg = shutil.which("postgres")
        if pg:
            return Path(pg).parent
        raise StartupError("PostgreSQL server binaries not found (apt-get install postgresql-15, or set KILN_PG_BINDIR)")

    # -- pieces ------------------------------------------------------------
    def check_prereqs(self) -> None:
        try:
            import buildgrid  # noqa: F401
            import grpc  # noqa: F401
        except ImportError as e:
            raise StartupError(
                f"{e}: run engine.py with the engine venv's Python ({self.home}/venv/bin/python); "
                "install it with `bash tests/remote/install.sh`"
            ) from e
        hint = "run `bash tests/remote/install.sh`"
        self.casd_bin = self.find_tool("buildbox-casd", [self.bin / "buildbox-casd"], hint)
        self.run_bin = self.find_tool(
            "buildbox-run", [self.bin / "buildbox-run", self.bin / "buildbox-run-bubblewrap"], hint
        )
        if not shutil.which("bwrap"):
            raise StartupError("bwrap (bubblewrap) not found in PATH; buildbox-run needs it (apt-get install bubblewrap)")
        bindir = self.pg_bindir()
        for tool in ("initdb", "postgres"):
            if not (bindir / tool).is_file():
                raise StartupError(f"{bindir / tool} not found (apt-get install postgresql-15, or set KILN_PG_BINDIR)")
        self.pg_bin = bindir
        # postgres refuses to run as root: as root, run it in a user namespace
        # where we are an ordinary uid (files stay owned by the real root).
        self.pg_prefix: list[str] = []
        if os.geteuid() == 0:
            unshare = shutil.which("unshare")
            if not unshare:
                raise StartupError("running as root needs `unshare` (util-linux) to start postgres as non-root")
            self.pg_prefix = [unshare, "--user", "--map-user=1000", "--map-group=1000"]

    def prepare_dir(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        # A fresh engine each run: drop what an earlier run left in the engine's own subdirectories.
        for sub in ["pgdata", "cas", "sock"] + [p.name for p in self.dir.glob("bot-*") if p.is_dir()]:
            p = self.dir / sub
            if p.is_symlink():
                p.unlink()
            elif p.is_dir():
                shutil.rmtree(p)
        for f in ["engine.json", "buildgrid.pid", "buildgrid.port", "buildgrid.yml", "postgres.ready"]:
            (self.dir / f).unlink(missing_ok=True)
        (self.dir / "cas").mkdir()
        # Unix socket paths must stay under ~100 bytes.
        sock = self.dir / "sock"
        if len(str(sock)) + len("/casd-999.sock") < 100 and len(str(sock)) + len("/.s.PGSQL.5432") < 100:
            sock.mkdir()
            self.sock_dir = sock
        else:
            self.tmp_sock_dir = Path(tempfile.mkdtemp(prefix="kiln-engine-", dir="/tmp"))
            self.sock_dir = self.tmp_sock_dir
            sock.symlink_to(self.tmp_sock_dir)
        (self.dir / "engine.log").write_text("")

    def start_postgres(self) -> None:
        data = self.dir / "pgdata"
        initdb_log = self.dir / "initdb.log"
        with open(initdb_log, "wb") as f:
            r = subprocess.run(
                self.pg_prefix
                + [str(self.pg_bin / "initdb"), "-D", str(data), "-U", "bgd", "--auth=trust", "-E", "UTF8",
                   "--locale=C", "--no-sync", "--no-instructions"],
                stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT, timeout=max(5, self.deadline - time.monotonic()),
            )
        if r.returncode != 0:
            raise StartupError(f"initdb failed ({r.returncode}); last lines of {initdb_log}:\n{tail(initdb_log)}")
        self.log("initdb done")
        log = self.dir / "postgres.log"
        self.postgres = self.spawn(
            "postgres",
            self.pg_prefix
            + [
                str(self.pg_bin / "postgres"), "-D", str(data),
                "-c", "listen_addresses=",
                "-c", f"unix_socket_directories={self.sock_dir}",
                "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                "-c", "max_connections=200", "-c", "shared_buffers=32MB",
                "-c", "log_min_messages=warning", "-c", "log_connections=off",
            ],
            log,
            # SIGINT: "fast" shutdown (disconnects clients); SIGQUIT if the engine dies.
            stop_signal=signal.SIGINT,
            pdeath=signal.SIGQUIT,
        )
        sock = self.sock_dir / ".s.PGSQL.5432"

        def ready() -> bool:
            if not sock.exists():
                return False
            s = socket.socket(socket.AF_UNIX)
            try:
                s.connect(str(sock))
            except OSError:
                return False
            finally:
                s.close()
            return "ready to accept connections" in log.read_text(errors="replace")

        self.wait_for("postgres to accept connections", ready, self.postgres, log)
        self.log("postgres is up")

    def write_config(self, port: int) -> Path:
        q = json.dumps  # JSON strings are valid YAML scalars
        wildcard = sorted(set(DEFAULT_WILDCARD_KEYS + self.args.property_key))
        cfg = f"""# Written by tests/remote/engine.py for one engine run.
server:
  - !channel
    address: {q(f"127.0.0.1:{port}")}
    insecure-mode: true

connections:
  - !sql-connection &sql
    connection-string: {q(self.db_url)}
    pool-size: 20
    max-overflow: 40
    pool-timeout: 30

storages:
  - !disk-storage &cas
    path: {q(str(self.dir / "cas"))}

caches:
  - !lru-action-cache &ac
    storage: *cas
    max-cached-refs: 100000
    allow-updates: true
    cache-failed-actions: {"true" if self.args.cache_failed_actions else "false"}

schedulers:
  - !sql-scheduler &scheduler
    sql: *sql
    storage: *cas
    action-cache: *ac
    property-set: !dynamic-property-set
      wildcard-property-keys: {q(wildcard)}
    instance-pools: [{q(self.instances)}]
    bot-session-keepalive-timeout: {int(self.args.bot_keepalive_timeout)}
    session-expiry-timer-interval: 1.0
    poll-interval: 0.5
    bot-poll-interval: 0.5
    execution-timer-interval: 5.0
    max-execution-timeout: {int(self.args.max_execution_timeout)}
    assigners:
      - !priority-age-assigner
        count: 1
        interval: 0.05
        jitter-factor: 0.02
        failure-backoff: 0.2

instances:
  - name: {q(self.instances)}
    description: kiln test engine
    services:
      - !action-cache
        cache: *ac
      - !execution
        scheduler: *scheduler
        operation-stream-keepalive-timeout: 30
      - !cas
        storage: *cas
      - !bytestream
        storage: *cas

thread-pool-size: {int(self.args.threads)}
"""
        path = self.dir / "buildgrid.yml"
        path.write_text(cfg)
        return path

    def spawn_buildgrid(self, port: int = 0, migrate: bool = True, wait_for: Path | None = None) -> None:
        """Start BuildGrid; with wait_for it imports itself, then waits for that file before using the database."""
        config = self.write_config(port)
        port_file = self.dir / "buildgrid.port"
        port_file.unlink(missing_ok=True)
        argv = [self.python, str(HERE / "_bgd_server.py"), "--config", str(config), "--db-url", self.db_url,
                "--port-file", str(port_file), "--wait-timeout", str(self.args.timeout)]
        if not migrate:
            argv.append("--skip-migrate")
        if wait_for is not None:
            argv += ["--wait-for", str(wait_for)]
        if self.args.verbose:
            argv += ["-v", "--validate"]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.buildgrid = self.spawn("buildgrid", argv, self.dir / "buildgrid.log", env=env)

    def start_buildgrid(self, port: int = 0, migrate: bool = True) -> None:
        if self.buildgrid is None or not self.buildgrid.alive():
            self.spawn_buildgrid(port, migrate)
        port_file = self.dir / "buildgrid.port"
        log = self.dir / "buildgrid.log"
        self.wait_for("BuildGrid to bind its port", port_file.exists, self.buildgrid, log)
        self.port = int(port_file.read_text().split()[0])
        (self.dir / "buildgrid.pid").write_text(f"{self.buildgrid.pid}\n")
        self.log(f"buildgrid serves on port {self.port}")
        self.wait_for("BuildGrid to answer GetCapabilities", self.capabilities_ok, self.buildgrid, log, step=0.1)

    def capabilities_ok(self) -> bool:
        import grpc

        from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2 as re_pb2
        from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2_grpc as re_grpc

        with grpc.insecure_channel(f"127.0.0.1:{self.port}") as ch:
            try:
                caps = re_grpc.CapabilitiesStub(ch).GetCapabilities(
                    re_pb2.GetCapabilitiesRequest(instance_name=""), timeout=2
                )
                return caps.execution_capabilities.exec_enabled
            except grpc.RpcError:
                return False

    def start_workers(self) -> None:
        url = f"grpc://127.0.0.1:{self.port}"
        ready_files = []
        for i in range(self.args.workers):
            wdir = self.dir / f"bot-{i}"
            (wdir / "cache").mkdir(parents=True)
            sock = self.sock_dir / f"casd-{i}.sock"
            casd_log = self.dir / f"casd-{i}.log"
            casd = self.spawn(
                f"casd-{i}",
                [self.casd_bin, f"--cas-remote={url}", f"--bind=unix:{sock}", "--log-level=warning",
                 str(wdir / "cache")],
                casd_log,
            )
            self.casds.append(casd)
            self.wait_for(f"buildbox-casd #{i} socket", sock.exists, casd, casd_log)
            ready = wdir / "ready"
            ready_files.append((ready, i))
            argv = [self.python, str(HERE / "_bot.py"), "--server", url, "--casd", f"unix:{sock}",
                    "--runner", self.run_bin, "--workdir", str(wdir), "--ready-file", str(ready),
                    "--bot-id", f"kiln-test-bot-{i}-{os.getpid()}"]
            for prop in self.args.bot_property:
                argv += ["--property", prop]
            for arg in self.args.runner_arg:
                argv.append(f"--runner-arg={arg}")
            if self.args.verbose:
                argv += ["--runner-log-level", "info"]
            bot = self.spawn(f"bot-{i}", argv, self.dir / f"bot-{i}.log", env=dict(os.environ, PYTHONUNBUFFERED="1"))
            self.bots.append(bot)
        for ready, i in ready_files:
            self.wait_for(f"bot #{i} to open its session", ready.exists, self.bots[i], self.dir / f"bot-{i}.log")
        self.log(f"{len(self.bots)} bot(s) connected")

    def write_state(self) -> None:
        state = {
            "url": f"grpc://127.0.0.1:{self.port}",
            "port": self.port,
            "instances": self.instances,
            "engine_pid": os.getpid(),
            "pids": {
                "buildgrid": self.buildgrid.pid if self.buildgrid else None,
                "postgres": self.postgres.pid if self.postgres else None,
                "casd": [c.pid for c in self.casds],
                "bots": [b.pid for b in self.bots],
            },
            "logs": str(self.dir),
        }
        tmp = self.dir / "engine.json.tmp"
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.rename(self.dir / "engine.json")

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> None:
        self.check_prereqs()
        self.prepare_dir()
        self.log(f"engine pid {os.getpid()}, dir {self.dir}, workers {self.args.workers}")
        # BuildGrid takes seconds to import: start it first; it waits for postgres.ready.
        self.db_url = "postgresql://bgd@/postgres?host=" + urllib.parse.quote(str(self.sock_dir), safe="/")
        pg_ready = self.dir / "postgres.ready"
        self.spawn_buildgrid(wait_for=pg_ready)
        self.start_postgres()
        pg_ready.write_text("")
        self.start_buildgrid()
        self.start_workers()
        self.write_state()

    def restart_buildgrid(self) -> None:
        self.log("SIGHUP: restarting BuildGrid")
        if self.buildgrid is not None:
            self.buildgrid.stop(timeout=10)
            self.children.remove(self.buildgrid)
            self.buildgrid = None
        old_deadline = self.deadline
        self.deadline = time.monotonic() + self.args.timeout
        try:
            self.start_buildgrid(port=self.port or 0, migrate=False)
        except StartupError as e:
            self.log(f"restart failed: {e}")
            sys.stderr.write(f"kiln-engine: BuildGrid restart failed: {e}\n")
        self.deadline = old_deadline
        self.write_state()

    def watch(self) -> None:
        reported: set[int] = set()
        while not self.stop_event.wait(0.25):
            if self.restart_requested:
                self.restart_requested = False
                self.restart_buildgrid()
            for c in self.children:
                if not c.alive() and not c.expected_exit and c.pid not in reported:
                    reported.add(c.pid)
                    msg = f"{c.name} (pid {c.pid}) exited with status {c.proc.returncode}; see {c.log}"
                    self.log(msg)
                    sys.stderr.write(f"kiln-engine: {msg}\n")
                    sys.stderr.flush()

    def stop(self) -> None:
        self.log("stopping")
        order = self.bots + self.casds + ([self.buildgrid] if self.buildgrid else []) + (
            [self.postgres] if self.postgres else []
        )
        rest = [c for c in self.children if c not in order]
        for c in rest + order:
            c.stop(timeout=10)
        if self.tmp_sock_dir is not None:
            shutil.rmtree(self.tmp_sock_dir, ignore_errors=True)
        self.log("stopped")


def watch_stdin(stop: threading.Event) -> None:
    """Stop when stdin reaches EOF, if stdin is a pipe, socket, FIFO or terminal."""
    import stat

    try:
        mode = os.fstat(0).st_mode
    except OSError:
        return
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(0)):
        return

    def reader() -> None:
        try:
            while os.read(0, 4096):
                pass
        except OSError:
            pass
        stop.set()

    threading.Thread(target=reader, name="stdin-watch", daemon=True).start()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", required=True, help="directory for the database, CAS, logs and sockets")
    ap.add_argument("--workers", type=int, default=1, help="number of bots (each with its own casd); default 1")
    ap.add_argument("--instance", action="append", default=None,
                    help='extra instance name(s) served besides "" (default: main); repeatable')
    ap.add_argument("--timeout", type=float, default=120.0, help="start-up timeout in seconds (default 120)")
    ap.add_argument("--engine-home", default=str(ENGINE_HOME), help="where install.sh put venv/ and bin/")
    ap.add_argument("--pg-bindir", help="PostgreSQL server binaries (default: newest /usr/lib/postgresql/*/bin)")
    ap.add_argument("--property-key", action="append", default=[],
                    help="extra platform property key accepted (not matched) by the scheduler; repeatable")
    ap.add_argument("--bot-property", action="append", default=[],
                    help="extra KEY=VALUE property the bots advertise (KEY must be a --property-key); repeatable")
    ap.add_argument("--runner-arg", action="append", default=[], help="extra buildbox-run argument; repeatable")
    ap.add_argument("--bind-host-usr", action="store_true",
                    help="bind the host's /usr read-only at /usr in every sandbox (buildbox-run "
                         "--ro-bind-mount=/usr:/usr); the input root then needs bin -> usr/bin, lib -> usr/lib, "
                         "lib64 -> usr/lib64 symlinks for /bin/sh and the dynamic loader")
    ap.add_argument("--bot-keepalive-timeout", type=float, default=10,
                    help="seconds after which a silent bot is declared dead and its job requeued (default 10)")
    ap.add_argument("--max-execution-timeout", type=float, default=3600)
    ap.add_argument("--cache-failed-actions", action="store_true",
                    help="let BuildGrid put results with a non-zero exit code in the action cache")
    ap.add_argument("--threads", type=int, default=64, help="BuildGrid gRPC threads (= max concurrent RPCs)")
    ap.add_argument("-v", "--verbose", action="store_true", help="engine log on stderr, more verbose child logs")
    args = ap.parse_args()
    if args.instance is None:
        args.instance = ["main"]
    if args.bind_host_usr:
        args.runner_arg.append("--ro-bind-mount=/usr:/usr")
    if args.workers < 0:
        ap.error("--workers must be >= 0")

    engine = Engine(args)

    def on_signal(sig: int, _frame: object) -> None:
        if sig == signal.SIGHUP:
            engine.restart_requested = True
            return
        engine.stop_event.set()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    watch_stdin(engine.stop_event)

    try:
        engine.start()
    except StartupError as e:
        sys.stderr.write(f"ERROR: kiln test engine did not start: {e}\n(logs in {engine.dir})\n")
        sys.stderr.flush()
        try:
            engine.log(f"start-up failed: {e}")
            engine.stop()
        except Exception:
            pass
        return 1
    except BaseException:
        engine.stop()
        raise

    engine.log(f"READY grpc://127.0.0.1:{engine.port} after {time.monotonic() - engine.t0:.2f}s")
    try:
        sys.stdout.write(f"READY grpc://127.0.0.1:{engine.port}\n")
        sys.stdout.flush()
    except BrokenPipeError:
        engine.stop_event.set()
    try:
        engine.watch()
    finally:
        engine.stop()
    return 0


if __name__ == "__main__":
    reexec_in_engine_venv(__file__)
    sys.exit(main())
