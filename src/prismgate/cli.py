"""The `prismgate` command.

prismgate generate "A cute baby sea otter" --model mock/quickstart --out images/
prismgate check-config config.yaml
prismgate --version
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from prismgate._version import __version__

if TYPE_CHECKING:
    from prismgate.config import Config
    from prismgate.identity.accounts import Accounts

T = TypeVar("T")

app = typer.Typer(
    name="prismgate",
    help="An OpenAI-compatible gateway for image generation and vision.",
    add_completion=False,
    pretty_exceptions_enable=False,
    invoke_without_command=True,
)
console = Console()
errors = Console(stderr=True, soft_wrap=True)  # error lines stay whole for logs and grep

_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}


def _checked_config(path: Path | None) -> Config:
    """The config at `path`, with every deployment resolved; exit 2 naming the problem."""
    from prismgate.catalog import builtin_catalog
    from prismgate.config import load_config
    from prismgate.errors import ConfigError
    from prismgate.routing import DeploymentResolver

    try:
        loaded = load_config(path)
        DeploymentResolver(loaded, builtin_catalog(), direct_models=False)
    except ConfigError as error:
        errors.print(f"[red]config error:[/] {error}")
        raise typer.Exit(2) from None
    return loaded


def _version(value: bool) -> None:
    if value:
        console.print(f"prismgate {__version__}")
        raise typer.Exit


ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="A LiteLLM-style config.yaml.")
]
HostOption = Annotated[str, typer.Option(help="Address to listen on.")]
PortOption = Annotated[int, typer.Option(help="Port to listen on.")]
WorkersOption = Annotated[
    int, typer.Option("--workers", "--num_workers", min=1, help="Worker processes.")
]
InsecureOption = Annotated[
    bool,
    typer.Option(help="Allow listening beyond loopback without a master key."),
]


@app.callback()
def main_options(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
    config: ConfigOption = None,
    host: HostOption = "127.0.0.1",
    port: PortOption = 4000,
    workers: WorkersOption = 1,
    insecure: InsecureOption = False,
) -> None:
    """An OpenAI-compatible gateway for image generation and vision.

    `prismgate --config FILE` serves FILE, as `litellm --config FILE` does.
    """
    if ctx.invoked_subcommand is not None:
        return
    if config is None:
        console.print(ctx.get_help())
        raise typer.Exit
    serve(config=config, host=host, port=port, workers=workers, insecure=insecure)


@app.command()
def serve(
    config: ConfigOption = None,
    host: HostOption = "127.0.0.1",
    port: PortOption = 4000,
    workers: WorkersOption = 1,
    insecure: InsecureOption = False,
    log_level: Annotated[str, typer.Option(help="uvicorn's log level.")] = "warning",
) -> None:
    """Run the OpenAI-compatible proxy."""
    import os

    from prismgate.config import CONFIG_PATH_VARIABLE
    from prismgate.proxy import server

    loaded = _checked_config(config)  # fail here, naming the path, not in each worker
    master_key = loaded.general_settings.master_key
    if master_key is None and not insecure and not _is_loopback(host):
        errors.print(
            f"[red]refusing to listen on {host} without a master key:[/] set "
            "general_settings.master_key, or pass --insecure"
        )
        raise typer.Exit(2)
    groups = list(dict.fromkeys(entry.model_name for entry in loaded.model_list))
    settings = loaded.general_settings.server
    file_limit = server.raise_file_limit()  # workers inherit it
    guard = server.ConnectionGuard(settings, file_limit)
    console.print(
        f"prismgate {__version__} listening on http://{host}:{port} "
        f"({workers} worker{'s' if workers > 1 else ''}); "
        f"auth: {'master key' if master_key else 'none'}"
    )
    console.print(f"serving {len(groups)} model groups: {', '.join(groups) or '(none)'}")
    console.print(
        f"clients: headers within {settings.header_timeout_seconds:g} s, body within "
        f"{settings.body_timeout_seconds:g} s (+1 s per {settings.body_min_bytes_per_second} B), "
        f"idle {settings.keep_alive_timeout_seconds:g} s; at most {guard.max_connections} "
        f"connections per worker (open-file limit {file_limit})"
    )
    if config is not None:
        os.environ[CONFIG_PATH_VARIABLE] = str(config.resolve())
    server.run(
        "prismgate.proxy.app:create_app_from_environment",
        guard=guard,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        access_log=False,
        log_level=log_level,
        server_header=False,
        date_header=False,
        # X-Forwarded-* from clients are not trusted (and not parsed on every request).
        proxy_headers=False,
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@app.command()
def generate(
    prompt: Annotated[str, typer.Argument(help="What to draw.")],
    model: Annotated[str, typer.Option(help="provider/model, or a model group.")] = (
        "mock/quickstart"
    ),
    n: Annotated[int, typer.Option(help="How many images.")] = 1,
    size: Annotated[str | None, typer.Option(help="WIDTHxHEIGHT, or auto.")] = None,
    quality: Annotated[str | None, typer.Option()] = None,
    config: Annotated[Path | None, typer.Option(help="A LiteLLM-style config.yaml.")] = None,
    out: Annotated[Path, typer.Option(help="Folder to write the images to.")] = Path("images"),
) -> None:
    """Generate images and write them to files (mock/ models need no key or network)."""
    import asyncio

    from prismgate.config import load_config
    from prismgate.errors import ConfigError, PrismgateError
    from prismgate.gateway import Gateway
    from prismgate.media import sniff_image_type
    from prismgate.sdk import aimage_generation

    async def run() -> None:
        async with Gateway(load_config(config)) as gateway:
            response = await aimage_generation(
                prompt, model=model, n=n, size=size, quality=quality,
                response_format="b64_json", gateway=gateway,
            )  # fmt: skip
        out.mkdir(parents=True, exist_ok=True)
        table = Table("file", "bytes", "revised prompt")
        for index, item in enumerate(response.data):
            data = base64.b64decode(item.b64_json or "")
            extension = _EXTENSIONS.get(sniff_image_type(data[:16]) or "", "bin")
            path = out / f"image-{response.created}-{index}.{extension}"
            path.write_bytes(data)
            table.add_row(str(path), str(len(data)), item.revised_prompt or "")
        console.print(table)
        meta = response._hidden_params
        if meta is not None:
            cost = "unknown" if meta.response_cost is None else f"${meta.response_cost:.4f}"
            console.print(f"served by {meta.provider}/{meta.model}, cost {cost}")

    try:
        asyncio.run(run())
    except ConfigError as error:
        errors.print(f"[red]config error:[/] {error}")
        raise typer.Exit(2) from None
    except PrismgateError as error:
        errors.print(f"[red]{type(error).__name__}[/] ({error.status_code}): {error.message}")
        raise typer.Exit(1) from None


@app.command("check-config")
def check_config(path: Annotated[Path, typer.Argument(help="The config.yaml to check.")]) -> None:
    """Validate a config file and list the model groups it serves."""
    loaded = _checked_config(path)
    table = Table("model group", "deployment", "api_base")
    for entry in loaded.model_list:
        params = entry.litellm_params
        table.add_row(entry.model_name, params.model, params.api_base or "(provider default)")
    console.print(table)
    console.print(f"{path}: valid, {len(loaded.model_list)} deployments", soft_wrap=True)


db_app = typer.Typer(help="The gateway's database (keys, teams, users, spend).")
keys_app = typer.Typer(help="Gateway keys, over the same code as the /key/* routes.")
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")


def _database(config: Path | None) -> str:
    """The database the config names, or the embedded SQLite file in its `data_dir`: the
    one `serve` uses."""
    from prismgate.storage.sql import database_url, safe_url

    general = _checked_config(config).general_settings
    url = database_url(general.database_url, general.data_dir)
    # Said on stderr: a relative data_dir is read from the folder the command runs in.
    errors.print(f"database: {safe_url(url)}", highlight=False)
    return url


def _with_accounts(config: Path | None, work: Callable[[Accounts], Awaitable[T]]) -> T:
    """Run `work` with the accounts service over the config's database (migrated first)."""
    import asyncio

    from prismgate.errors import PrismgateError
    from prismgate.identity.accounts import Accounts
    from prismgate.storage.sql import open_sql_stores

    url = _database(config)

    async def run() -> T:
        keys, spend = await open_sql_stores(url)
        try:
            return await work(Accounts(keys))
        finally:
            await keys.aclose()
            await spend.aclose()

    try:
        return asyncio.run(run())
    except PrismgateError as error:
        errors.print(f"[red]error:[/] {error.message}")
        raise typer.Exit(1) from None


@db_app.command("upgrade")
def db_upgrade(config: ConfigOption = None) -> None:
    """Bring the database schema to this version (safe while other instances start)."""
    import asyncio

    from prismgate.storage.sql import safe_url, upgrade

    url = _database(config)
    asyncio.run(upgrade(url))
    console.print(f"database {safe_url(url)} is up to date")


@keys_app.command("create")
def keys_create(
    config: ConfigOption = None,
    alias: Annotated[str | None, typer.Option(help="A name for the key.")] = None,
    team: Annotated[str | None, typer.Option(help="The team it belongs to.")] = None,
    user: Annotated[str | None, typer.Option(help="The user it belongs to.")] = None,
    models: Annotated[list[str] | None, typer.Option(help="A model group it may call.")] = None,
    max_budget: Annotated[float | None, typer.Option(help="Dollars it may spend.")] = None,
    budget_duration: Annotated[str | None, typer.Option(help="30d, 1h, 1mo, ...")] = None,
    ipm_limit: Annotated[int | None, typer.Option(help="Images per minute.")] = None,
    rpm_limit: Annotated[int | None, typer.Option(help="Requests per minute.")] = None,
    duration: Annotated[str | None, typer.Option(help="How long it lives.")] = None,
) -> None:
    """Make a key and print it (the only time it is shown)."""
    from prismgate.identity.wire import GenerateKey

    request = GenerateKey(
        key_alias=alias, team_id=team, user_id=user, models=models or [],
        max_budget=max_budget, budget_duration=budget_duration, ipm_limit=ipm_limit,
        rpm_limit=rpm_limit, duration=duration,
    )  # fmt: skip
    made = _with_accounts(config, lambda accounts: accounts.generate_key(request))
    console.print(made["key"], soft_wrap=True)


@keys_app.command("list")
def keys_list(config: ConfigOption = None) -> None:
    """The live keys: alias, shown name, team, spend and budget."""
    listed = _with_accounts(config, lambda accounts: accounts.list_keys(size=100, full=True))
    table = Table("alias", "key", "team", "spend", "max budget", "token")
    for key in listed["keys"]:
        budget = "-" if key["max_budget"] is None else f"${key['max_budget']:.4f}"
        table.add_row(key["key_alias"] or "", key["key_name"], key["team_id"] or "",
                      f"${key['spend']:.4f}", budget, key["token"][:12])  # fmt: skip
    console.print(table)


@keys_app.command("info")
def keys_info(
    key: Annotated[str, typer.Argument(help="The key, or its token.")],
    config: ConfigOption = None,
) -> None:
    """One key's settings and spend, as JSON."""
    import json

    from prismgate.identity.wire import key_view

    async def info(accounts: Accounts) -> dict[str, object]:
        return key_view(await accounts.key(key))

    console.print_json(json.dumps(_with_accounts(config, info)))


@keys_app.command("revoke")
def keys_revoke(
    key: Annotated[str, typer.Argument(help="The key, or its token.")],
    config: ConfigOption = None,
) -> None:
    """Delete a key: it stops working on every instance within a second."""
    from prismgate.identity.wire import DeleteKeys

    request = DeleteKeys(keys=[key])
    _with_accounts(config, lambda accounts: accounts.delete_keys(request))
    console.print("revoked")


def main() -> None:
    """Entry point of the `prismgate` command."""
    app()
