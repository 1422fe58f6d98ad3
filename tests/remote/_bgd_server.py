"""Run one BuildGrid server for the kiln test engine (started by engine.py).

Run with the engine venv's Python:

    _bgd_server.py --config CONFIG.yml --db-url URL --port-file FILE [-v]

It applies BuildGrid's database migrations to the (fresh) database, starts
the server from CONFIG (which may bind port 0) and, once the gRPC server is
serving, writes the bound port to FILE (atomically, via a rename). It stops
on SIGTERM/SIGINT.

This is `bgd migrate apply` + `bgd server start` in one process (one Python
start-up instead of two) plus the port report that the `bgd` CLI lacks. It
uses BuildGrid 0.9.1's own server factory, so it is pinned to that version
(tests/remote/requirements.txt).
"""

import argparse
import ctypes
import os
import signal
import sys
import time


def _die_with_parent(sig: int = signal.SIGTERM) -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, sig)  # PR_SET_PDEATHSIG
    except Exception:  # pragma: no cover - best effort
        pass


def _migrate(db_url: str) -> None:
    from importlib.resources import files

    from alembic import command
    from alembic.config import Config

    from buildgrid.server.sql.provider import SqlProvider

    sql = SqlProvider(connection_string=db_url)
    cfg = Config()
    cfg.set_main_option("script_location", str(files("buildgrid.server.sql").joinpath("alembic")))
    with sql._engine.begin() as connection:  # noqa: SLF001 - same as `bgd migrate apply`
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")
    sql._engine.dispose()  # noqa: SLF001


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--db-url", required=True)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--skip-migrate", action="store_true", help="the database already has BuildGrid's schema")
    ap.add_argument("--wait-for", help="import everything, then wait for this file (the database is up) to exist")
    ap.add_argument("--wait-timeout", type=float, default=120.0)
    ap.add_argument("--validate", action="store_true",
                    help="check CONFIG against BuildGrid's JSON schema first (takes ~4 s of CPU)")
    ap.add_argument("-v", "--verbose", action="count", default=1)
    args = ap.parse_args()

    _die_with_parent()

    from buildgrid.server.app.cli import setup_logging

    setup_logging(verbosity=args.verbose)

    t0 = time.monotonic()
    # Import the heavy modules first: this overlaps with the database start-up.
    from buildgrid.server.app.commands.cmd_server import _create_server_from_config
    from buildgrid.server.app.settings.parser import load_config
    from buildgrid.server.exceptions import ShutdownSignal

    print(f"kiln-engine: BuildGrid imported in {time.monotonic() - t0:.2f}s", flush=True)
    if args.wait_for:
        deadline = time.monotonic() + args.wait_timeout
        while not os.path.exists(args.wait_for):
            if time.monotonic() > deadline:
                print(f"kiln-engine: {args.wait_for} did not appear in {args.wait_timeout:.0f}s", flush=True)
                return 1
            time.sleep(0.02)
    if not args.skip_migrate:
        _migrate(args.db_url)
        print(f"kiln-engine: database migrated in {time.monotonic() - t0:.2f}s", flush=True)

    if not args.validate:
        # The schema check re-compiles the schema for every tagged object: ~4 s of
        # CPU, most of BuildGrid's start-up. engine.py writes a config it has
        # checked (`--validate`), so skip it.
        import buildgrid.server.app.settings.parser as parser

        parser.validate_config_value = lambda *_a, **_k: None
    settings = load_config(args.config)
    server = _create_server_from_config(settings)

    signalled = False

    def stop(sig: int, _frame: object) -> None:
        nonlocal signalled
        if not signalled:
            signalled = True
            raise ShutdownSignal(f"Received signal {sig}")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def port_assigned(port_map: dict[str, int]) -> None:
        ports = sorted(set(port_map.values()))
        tmp = args.port_file + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(" ".join(str(p) for p in ports) + "\n")
        os.rename(tmp, args.port_file)
        print(f"kiln-engine: serving on ports {ports} after {time.monotonic() - t0:.2f}s", flush=True)

    try:
        server.start(port_assigned_callback=port_assigned)
    except (KeyboardInterrupt, ShutdownSignal):
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
