"""``pneumoscan serve``."""

from __future__ import annotations

import argparse
import sys

from pneumoscan.cli.common import add_bf16_option, positive_int, positive_number, warn_if_synthetic


def add(sub: argparse._SubParsersAction) -> None:
    from pneumoscan import serve

    p = sub.add_parser(
        "serve",
        help="web page and JSON API for predictions",
        description="Serve a web page at / and a JSON API at /v1 (API docs at /docs). "
        "A research and education tool, not a medical device.",
    )
    p.add_argument("--model", help="model file (default: the bundled model)")
    p.add_argument(
        "--engine",
        choices=["torch", "onnx"],
        help="torch (heat maps available) or onnx (a .onnx file from pneumoscan export); "
        "default: the one the model file is made for",
    )
    add_bf16_option(p)
    p.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)"
    )
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000)")
    p.add_argument(
        "--max-upload-mb",
        type=positive_number,
        default=serve.DEFAULT_MAX_UPLOAD_BYTES / 2**20,
        help="largest request body in MiB (default: %(default)g)",
    )
    p.add_argument(
        "--max-megapixels",
        type=positive_number,
        default=serve.DEFAULT_MAX_PIXELS / 1e6,
        help="largest image accepted, in millions of pixels (default: %(default)g)",
    )
    p.add_argument(
        "--max-request-megapixels",
        type=positive_number,
        default=serve.DEFAULT_MAX_REQUEST_PIXELS / 1e6,
        help="most pixels the images of one request may decode to together, in millions "
        "(default: %(default)g)",
    )
    p.add_argument(
        "--max-in-flight",
        type=positive_int,
        default=serve.DEFAULT_MAX_IN_FLIGHT,
        help="most upload requests worked on at once; more get 503 (default: %(default)d)",
    )
    p.add_argument(
        "--body-timeout",
        type=positive_number,
        default=serve.DEFAULT_BODY_TIMEOUT_S,
        help="seconds a client may take to send an upload (default: %(default)g)",
    )
    p.add_argument(
        "--header-timeout",
        type=positive_number,
        default=serve.DEFAULT_HEADER_TIMEOUT_S,
        help="seconds a client may take to send its request headers before it is disconnected "
        "(default: %(default)g)",
    )
    p.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a host name clients may use to reach the server (checked against the Host header; "
        "default: this machine's names when --host is a loopback address, any otherwise)",
    )
    p.add_argument(
        "--save-uploads", metavar="DIR", help="keep a copy of every upload in DIR (default: never written)"
    )
    p.add_argument(
        "--save-uploads-max-mb",
        type=positive_number,
        default=serve.DEFAULT_SAVE_UPLOADS_MAX_BYTES / 2**20,
        help="stop keeping uploads once DIR holds this many MiB (default: %(default)g)",
    )


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from pneumoscan.atomic import output_folder
    from pneumoscan.predict import Predictor
    from pneumoscan.serve.app import create_app
    from pneumoscan.serve.listen import listening_socket
    from pneumoscan.serve.protocol import server_config
    from pneumoscan.serve.security import LOOPBACK_HOSTS

    if args.save_uploads:
        output_folder(args.save_uploads)
    sock = listening_socket(args.host, args.port)  # before anything is announced: a busy port is one line
    try:
        predictor = Predictor.load(args.model, args.engine, bf16=args.bf16)
        warn_if_synthetic(predictor.meta)
        loopback = args.host in LOOPBACK_HOSTS
        allowed = [*args.allowed_host, *(LOOPBACK_HOSTS if loopback else ())] or None
        app = create_app(
            predictor,
            max_upload_bytes=int(args.max_upload_mb * 2**20),
            max_pixels=int(args.max_megapixels * 1e6),
            max_request_pixels=int(args.max_request_megapixels * 1e6),
            max_in_flight=args.max_in_flight,
            body_timeout=args.body_timeout,
            save_uploads_dir=args.save_uploads,
            save_uploads_max_bytes=int(args.save_uploads_max_mb * 2**20),
            allowed_hosts=allowed,
        )
        if not loopback:
            print(
                f"pneumoscan: warning: listening on {args.host}: other machines can reach this server, "
                "which has no authentication",
                file=sys.stderr,
            )
        port = sock.getsockname()[1]
        print(
            f"pneumoscan: serving {predictor.meta.model_id()} ({predictor.engine.name}) "
            f"on http://{args.host}:{port}/ (API docs at /docs; Ctrl+C stops)",
            file=sys.stderr,
        )
        uvicorn.Server(server_config(app, header_timeout=args.header_timeout)).run(sockets=[sock])
    finally:
        sock.close()
    return 0
