"""``snapkit ui``: start the local web workbench (the web framework is imported only here, when it runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from snapkit.cli.options import DataReadOption, LegacyDataArgument, data_folder
from snapkit.cli.ui import console
from snapkit.errors import SnapkitError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def ui(
    data_arg: LegacyDataArgument = None,
    data_dir: DataReadOption = None,
    runs: Annotated[
        Path, typer.Option("--runs", metavar="DIR", help="Folder of training runs (RUNS/NAME/model.snapkit).")
    ] = Path("runs"),
    events: Annotated[
        list[Path] | None,
        typer.Option(
            "--events",
            metavar="DIR",
            help="Folder of saved event clips to review (listen/detect --save-clips, mine); repeat for more.",
        ),
    ] = None,
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on; anything but loopback is reachable from the network.")
    ] = DEFAULT_HOST,
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port to listen on.")] = DEFAULT_PORT,
    max_upload_mb: Annotated[
        float, typer.Option("--max-upload-mb", min=0.1, help="Largest upload or recording accepted, in megabytes.")
    ] = 50.0,
    no_token: Annotated[
        bool,
        typer.Option("--no-token", help="Ask no access token (refused unless --host is loopback)."),
    ] = False,
) -> None:
    """Open a local web workbench to record, review, relabel and retrain; prints the address to open."""
    try:
        import uvicorn

        from snapkit.ui.app import create_app
    except ImportError as err:
        raise SnapkitError(
            f"The workbench needs the web extras ({err.name} is missing); install them: pip install 'snapkit[ui]'."
        ) from None
    from snapkit.ui.security import check_host, new_token
    from snapkit.ui.workbench import Workbench, ensure_folder

    check_host(host, token_required=not no_token)
    data = data_folder(data_dir, data_arg)
    ensure_folder(data)
    token = None if no_token else new_token()
    workbench = Workbench(data_dir=data, runs_dir=runs, events_dirs=list(events or []))
    app = create_app(workbench, token, max_upload_mb=max_upload_mb)
    shown = f"[{host}]" if ":" in host else host
    address = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
    console.print(
        f"snapkit workbench on {data} (runs {runs}; events {', '.join(map(str, events or [])) or 'none'}).\n"
        f"Open {address}\nCtrl-C stops it.",
        highlight=False,
        soft_wrap=True,
    )
    uvicorn.run(app, host=host, port=port, log_level="warning")


def register(app: typer.Typer) -> None:
    app.command(name="ui", help="Open a local web workbench to record, review, relabel and retrain.")(ui)
