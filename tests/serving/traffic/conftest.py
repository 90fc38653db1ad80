"""A real PostgreSQL server for the traffic-store tests: Debian's initdb/pg_ctl on a free loopback port.

PostgreSQL refuses to run as root, so as root the binaries run as the ``postgres`` user (``runuser``) in
a data folder it owns (as in ``infra/stack.sh``). Not installed is a failure, not a skip: CI installs it.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_PASSWORD = "pg-test-secret-7f3a"  # checked never to appear in logs or output


def _pg_bin() -> Path | None:
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.access(f"{folder}/pg_ctl", os.X_OK):
            return Path(folder)
    found = shutil.which("pg_ctl")
    return Path(found).parent if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """``postgresql://compactlm:<password>@127.0.0.1:<port>/traffic`` on a server started for the session."""
    bin_dir = _pg_bin()
    if bin_dir is None:
        pytest.fail("PostgreSQL is not installed: apt-get install -y postgresql (the traffic store is tested "
                    "against a real server)")
    as_root = os.geteuid() == 0
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    folder = Path(tempfile.mkdtemp(prefix="compactlm-pg-"))  # under /tmp: postgres must reach it
    data = folder / "data"
    (folder / "pw").write_text(PG_PASSWORD)
    if as_root:
        shutil.chown(folder, "postgres")
        shutil.chown(folder / "pw", "postgres")

    def run(*args: str) -> None:
        done = subprocess.run([*prefix, *args], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            pytest.fail(f"{Path(args[0]).name} failed ({done.returncode}): {done.stderr[-1500:]}")

    port = _free_port()
    run(str(bin_dir / "initdb"), "-D", str(data), "-U", "compactlm", f"--pwfile={folder / 'pw'}",
        "--auth=scram-sha-256", "-E", "UTF8")
    run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"), "-w", "-t", "60",
        "-o", f"-h 127.0.0.1 -p {port} -k {folder}", "start")
    try:
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=port, user="compactlm", password=PG_PASSWORD,
                                dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute("CREATE DATABASE traffic")
        conn.close()
        yield f"postgresql://compactlm:{PG_PASSWORD}@127.0.0.1:{port}/traffic"
    finally:
        subprocess.run([*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                       capture_output=True, timeout=120)
        shutil.rmtree(folder, ignore_errors=True)
