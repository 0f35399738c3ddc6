"""Run localstripe bound to one address, with its state file in a chosen place.

localstripe's own CLI (1.15.x: `localstripe [--port PORT] [--from-scratch]`)
always listens on [::] (every interface) and hard-codes its pickle state file
as /tmp/localstripe.pickle. This launcher, run with the venv's python by
deploy/local/stack.sh, reuses localstripe's aiohttp app unchanged but:
  - binds to --host (default 127.0.0.1) only;
  - keeps the state in --state-file (default: $TMPDIR/localstripe.pickle),
    written atomically (temp file + rename).
"""

import argparse
import logging
import os
import pickle
import socket
import sys
import tempfile

from aiohttp import web
from localstripe import resources, server


def _check_internals() -> None:
    # The launcher relies on these localstripe 1.15.x internals; fail loudly if they move.
    store = getattr(resources, "store", None)
    if (
        not isinstance(getattr(server, "app", None), web.Application)
        or not hasattr(store, "try_load_from_disk")
        or not hasattr(store, "dump_to_disk")
    ):
        sys.exit(
            "localstripe_launch.py: this localstripe version has no "
            "localstripe.server.app / resources.store.dump_to_disk; "
            "update deploy/local/localstripe_launch.py"
        )


def _patch_state_file(path: str) -> None:
    store_cls = type(resources.store)

    def try_load_from_disk(self: dict[str, object]) -> None:
        try:
            with open(path, "rb") as f:
                old = pickle.load(f)  # noqa: S301 - our own state file
        except FileNotFoundError:
            return
        self.clear()
        self.update(old)

    def dump_to_disk(self: dict[str, object]) -> None:
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            pickle.dump(dict(self), f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)

    store_cls.try_load_from_disk = try_load_from_disk
    store_cls.dump_to_disk = dump_to_disk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8420)
    parser.add_argument(
        "--state-file", default=os.path.join(tempfile.gettempdir(), "localstripe.pickle")
    )
    parser.add_argument(
        "--from-scratch", action="store_true", help="ignore (and later overwrite) the state file"
    )
    parser.add_argument(
        "--in-memory",
        action="store_true",
        help="keep the state in memory only (localstripe otherwise pickles its whole store on "
        "every write, which gets slow as it grows): for load and chaos runs",
    )
    parser.add_argument("--quiet", action="store_true", help="no access log")
    args = parser.parse_args()

    _check_internals()
    _patch_state_file(os.path.abspath(args.state_file))
    if args.in_memory:
        type(resources.store).dump_to_disk = lambda self: None
    elif not args.from_scratch:
        resources.store.try_load_from_disk()

    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))

    access_log = logging.getLogger("aiohttp.access")
    access_log.setLevel(logging.WARNING if args.quiet else logging.DEBUG)
    access_log.addHandler(logging.StreamHandler())

    # run_app handles SIGINT/SIGTERM as a graceful exit.
    web.run_app(server.app, sock=sock, access_log=access_log)


if __name__ == "__main__":
    main()
