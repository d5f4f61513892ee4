"""Start ``dit serve``: load the pipeline once, build the app, run uvicorn on one address."""

from __future__ import annotations

import ipaddress
import logging
import socket
from typing import Any, Optional

import uvicorn

from dit.config import WeightsChoice
from dit.errors import UserError
from dit.pipeline import Pipeline
from dit.serve.app import Limits, create_app

LOOPBACK = "127.0.0.1"


def load_pipeline(
    ckpt: str, weights: WeightsChoice = "ema", device: Optional[str] = None, precision: str = "fp32", **official: Any
) -> Pipeline:
    """The pipeline the server samples with (one per server, one device): a path or a hub id.

    ``official``: ``model``, ``image_size``, ``num_classes``, ``vae`` as ``dit sample`` takes them.
    """
    pipe = Pipeline.from_pretrained(ckpt, weights=weights, device=device, **official)
    return pipe.to(pipe.device, precision)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind_message(host: str, port: int) -> str:
    """What the command says when it starts: where, and who can reach it."""
    url = f"http://{host if ':' not in host else f'[{host}]'}:{port}/"
    if is_loopback(host):
        return f"dit serve: open {url} (bound to {host}: only this machine can reach it; --host 0.0.0.0 to share it)"
    return (
        f"dit serve: open {url} (bound to {host}: other machines on the network CAN reach it and use this "
        "device; there is no authentication)"
    )


def check_free(host: str, port: int) -> None:
    """Fail before loading the model when the address cannot be listened on (port taken, foreign address)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
            s.bind(infos[0][4])
    except OSError as e:
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror or e}; pick another --port or --host") from None


def serve(
    ckpt: str,
    host: str = LOOPBACK,
    port: int = 7860,
    weights: WeightsChoice = "ema",
    device: Optional[str] = None,
    precision: str = "fp32",
    limits: Optional[Limits] = None,
    previews: int = 8,
    **official: Any,
) -> None:
    """Load ``ckpt`` and serve the page and API until interrupted."""
    if not 0 < port < 65536:
        raise UserError(f"--port must be in 1..65535, got {port}")
    check_free(host, port)
    pipe = load_pipeline(ckpt, weights=weights, device=device, precision=precision, **official)
    app = create_app(pipe, limits or Limits(), ckpt=str(ckpt), previews=previews)
    print(bind_message(host, port), flush=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    uvicorn.run(app, host=host, port=port, log_level="warning")
