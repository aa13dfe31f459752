"""A real KMIP server for the tests: PyKMIP's, the one MongoDB's own driver tests run.

    python -m tests.kmip.server --port P --dir D

serves KMIP over mutual TLS on 127.0.0.1:P with the certificates in D (``ca.pem``,
``server.pem``; made by :class:`KmipFiles`), keeps its objects in ``D/pykmip.db`` and its
log in ``D/pykmip.log``, and prints ``ready`` once it listens. A test-only dependency
(the ``dev`` extra): production talks to the organisation's own KMIP server.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import signal
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import trustme

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class KmipFiles:
    """A CA, the server's certificate (127.0.0.1) and a client certificate (one PEM file with
    its key, as libmongocrypt's ``tlsCertificateKeyFile`` takes it), in ``directory``."""

    directory: Path

    @property
    def ca(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def server(self) -> Path:
        return self.directory / "server.pem"

    @property
    def client(self) -> Path:
        return self.directory / "client.pem"

    @classmethod
    def make(cls, directory: Path) -> KmipFiles:
        directory.mkdir(parents=True, exist_ok=True)
        files = cls(directory)
        ca = trustme.CA()
        ca.cert_pem.write_to_path(str(files.ca))
        ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(
            str(files.server)
        )
        # PyKMIP names the client by its certificate's common name (objects belong to it).
        client = ca.issue_cert("hotline-gateway", common_name="hotline-gateway")
        client.private_key_and_cert_chain_pem.write_to_path(str(files.client))
        return files


class KmipProcess:
    """The server as a child process; ``start`` returns once it listens."""

    def __init__(self, files: KmipFiles, port: int) -> None:
        self.files, self.port = files, port
        self.proc: subprocess.Popen[str] | None = None

    def operations(self) -> list[str]:
        """The KMIP operations the server has processed so far, in order, from its log."""
        log = self.files.directory / "pykmip.log"
        text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
        return re.findall(r"Processing operation: (\w+)", text)

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.kmip.server",
                "--port",
                str(self.port),
                "--dir",
                str(self.files.directory),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            # A group of its own: PyKMIP's server keeps a multiprocessing manager process, which
            # outlives a killed server unless the whole group goes (``stop``).
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # blocks until the server listens, or it died
        if line.strip() != "ready":
            self.stop()
            raise RuntimeError(f"the KMIP server did not start: {self.files.directory / 'pykmip.log'}")

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=2)  # PyKMIP finishes its open connections first: it can take 10 s
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        with contextlib.suppress(ProcessLookupError):  # whatever of its group is left
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.kmip.server")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args()
    # PyKMIP 0.11 names ciphers that cryptography has moved (it warns); it serves AES all the same.
    warnings.simplefilter("ignore")
    from kmip.services.server import KmipServer

    files = KmipFiles(args.dir)
    server = KmipServer(
        hostname="127.0.0.1",
        port=args.port,
        certificate_path=str(files.server),
        key_path=None,
        ca_path=str(files.ca),
        auth_suite="TLS1.2",
        config_path=None,
        log_path=str(args.dir / "pykmip.log"),
        database_path=str(args.dir / "pykmip.db"),
        logging_level=logging.INFO,
    )
    with server:
        print("ready", flush=True)
        server.serve()


if __name__ == "__main__":
    main()
