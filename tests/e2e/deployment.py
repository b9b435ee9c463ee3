"""The deployment of docs/deployment.md on loopback, for the proxy tests and the proxy
load benchmark: Debian's nginx with a self-signed certificate from openssl, in front of two
``camstudy serve`` hosts that share one PostgreSQL database and nothing else (each has its
own instance folder and no ``CAMSTUDY_SECRET_KEY``: the signing key, the sessions and the
limits come from the database).
"""

from __future__ import annotations

import os
import re
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from camstudy.processes import free_port, stop, wait_listening
from tests.e2e.servers import Gunicorn

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "docs" / "deployment" / "nginx.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
OPENSSL = shutil.which("openssl")
MISSING = [name for name, ok in (("nginx", Path(NGINX).exists()), ("openssl", OPENSSL is not None)) if not ok]


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1, valid for a day."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            OPENSSL,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def render_site(values: dict[str, str]) -> str:
    """docs/deployment/nginx.conf with its ``{{FIELD}}`` placeholders filled in."""
    text = TEMPLATE.read_text()
    for k, v in values.items():
        text = text.replace("{{" + k + "}}", v)
    assert not re.search(r"{{[A-Z_0-9]+}}", text), "a field of the template was not filled in"
    return text


@dataclass
class Deployment:
    base: str  # https://localhost:PORT, through nginx
    frame_origin: str  # https://127.0.0.1:PORT, the stand-in for MTurk's site
    cafile: Path
    backends: list[Gunicorn]
    db: str
    folder: Path

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cafile))


class Nginx:
    def __init__(self, folder: Path, site: str, frame_port: int, cert: Path, key: Path) -> None:
        self.folder = folder
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi", "www"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        (folder / "site.conf").write_text(site)
        user = "user root;" if os.geteuid() == 0 else ""  # workers that can read our temp folders
        (folder / "nginx.conf").write_text(f"""
daemon off;
master_process on;
worker_processes 1;
{user}
pid {folder}/nginx.pid;
error_log {folder}/error.log info;
events {{ worker_connections 512; }}
http {{
    access_log {folder}/access.log;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    types {{ text/html html; }}
    include {folder}/site.conf;
    # The stand-in for MTurk: the HIT page that frames the study, and the submit endpoint.
    server {{
        listen 127.0.0.1:{frame_port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        root {folder}/www;
        location = /mturk/externalSubmit {{ default_type text/plain; return 200 "HIT submitted\\n"; }}
    }}
}}
""")
        self.log = open(folder / "nginx.out", "a")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [NGINX, "-p", str(folder), "-c", str(folder / "nginx.conf")],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self) -> None:
        stop(self.proc, timeout=10, group=True)
        self.log.close()


@contextmanager
def deployment(db: str, folder: Path, workers: int = 2, env: dict[str, str] | None = None) -> Iterator[Deployment]:
    """nginx on a free loopback port in front of two hosts on ``db``; everything started
    is stopped by its pid on the way out."""
    cert, key = make_certificate(folder)
    port, frame_port = free_port(), free_port()
    frame_origin = f"https://127.0.0.1:{frame_port}"
    host_env = {
        "CAMSTUDY_SECRET_KEY": None,  # the key every host shares comes from the database
        "CAMSTUDY_PROXY_HOPS": "1",
        "CAMSTUDY_ALLOWED_HOSTS": "localhost",
        "CAMSTUDY_FRAME_ANCESTORS": frame_origin,
        "CAMSTUDY_MTURK_SUBMIT_HOSTS": frame_origin,
        **(env or {}),
    }
    backends: list[Gunicorn] = []
    nginx = None
    try:
        for i in (1, 2):
            (folder / f"host{i}").mkdir()
            backends.append(Gunicorn(db, folder / f"host{i}" / "instance", workers=workers, env=host_env).start())
        site = render_site(
            {
                "BACKEND_1": f"127.0.0.1:{backends[0].port}",
                "BACKEND_2": f"127.0.0.1:{backends[1].port}",
                "LISTEN": f"127.0.0.1:{port}",
                "SERVER_NAME": "localhost",
                "CERT": str(cert),
                "KEY": str(key),
            }
        )
        nginx = Nginx(folder / "nginx", site, frame_port, cert, key)
        wait_listening(nginx.proc, "127.0.0.1", port, timeout=30)
        wait_listening(nginx.proc, "127.0.0.1", frame_port, timeout=30)
        yield Deployment(f"https://localhost:{port}", frame_origin, cert, backends, db, folder)
    finally:
        if nginx is not None:
            nginx.stop()
        for b in backends:
            b.stop()
