"""The `prismgate` command.

prismgate serve --config config.yaml
prismgate check-config config.yaml
prismgate generate "A cute baby sea otter" --model mock/quickstart --out images/
prismgate chat --image otter.png "What is in this picture?"
prismgate --version

A config mistake is exit status 2 with one message naming each problem, never a
traceback; a port that cannot be had is exit status 3 and one line.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from prismgate._version import __version__
from prismgate.cli_progress import job_progress, spinner
from prismgate.observability.log_config import LogFormat, LogLevel

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
    # Plain help: flags read `--x / --no-x`, never a `<bool>` placeholder.
    rich_markup_mode=None,
)
console = Console()
errors = Console(stderr=True, soft_wrap=True)  # error lines stay whole for logs and grep

# Exit statuses: a config (or command line) mistake; a server that could not start.
CONFIG_MISTAKE = 2
CANNOT_START = 3
# examples/quickstart.yaml's key, which the README's examples send: loopback only.
EXAMPLE_MASTER_KEY = "sk-1234"


def _config_error(path: Path | None, message: str) -> NoReturn:
    where = f" in {path}" if path is not None else ""
    errors.print(f"[red]config error{where}:[/] {escape(message)}", highlight=False)
    raise typer.Exit(CONFIG_MISTAKE)


def _checked_config(path: Path | None) -> Config:
    """The config at `path`, checked as `serve` will use it (every deployment resolved,
    virtual keys, saved Portkey configs, allowed hosts, the encryption key); exit 2
    naming the problems."""
    from prismgate.catalog import builtin_catalog
    from prismgate.config import load_config
    from prismgate.errors import ConfigError
    from prismgate.identity.sealing import sealer_from_config
    from prismgate.media import HostAllowlist
    from prismgate.routing import DeploymentResolver
    from prismgate.routing.portkey_config import SavedConfigs
    from prismgate.routing.virtual_keys import VirtualKeys

    try:
        loaded = load_config(path)
        DeploymentResolver(loaded, builtin_catalog(), direct_models=False)
        VirtualKeys(loaded)
        SavedConfigs(loaded.portkey_configs)
        HostAllowlist(loaded.general_settings.media.allowed_hosts)
        sealer_from_config(loaded)
    except ConfigError as error:
        _config_error(path, str(error))
    return loaded


def _serves_something(config: Config) -> bool:
    """Whether callers can reach any model: a model group, a virtual key, a saved Portkey
    config, or their own provider keys."""
    return bool(
        config.model_list
        or config.virtual_keys
        or config.portkey_configs
        or config.general_settings.allow_client_provider_keys
    )


def _checked_serving_config(path: Path | None) -> Config:
    """`_checked_config`, for a gateway that must serve something."""
    if path is None:
        errors.print(
            "[red]no config:[/] prismgate serve needs --config FILE, a LiteLLM-style "
            "config.yaml with a model_list (examples/quickstart.yaml serves the built-in "
            "mock/ models)",
            highlight=False,
        )
        raise typer.Exit(CONFIG_MISTAKE)
    loaded = _checked_config(path)
    if not _serves_something(loaded):
        _config_error(
            path,
            "it serves no models: add model_list entries (model_name, and "
            "litellm_params.model such as mock/dall-e-3 or openai/gpt-image-2)",
        )
    return loaded


def _version(value: bool) -> None:
    if value:
        console.print(f"prismgate {__version__}")
        raise typer.Exit


ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", metavar="FILE", help="A LiteLLM-style config.yaml."),
]
HostOption = Annotated[str, typer.Option(help="Address to listen on.")]
PortOption = Annotated[int, typer.Option(help="Port to listen on (0: any free port).")]
WorkersOption = Annotated[
    int, typer.Option("--workers", "--num_workers", min=1, help="Worker processes.")
]
InsecureOption = Annotated[
    bool,
    typer.Option(help="Allow listening beyond loopback without a master key."),
]
LogLevelOption = Annotated[
    LogLevel,
    typer.Option(
        case_sensitive=False,
        help="Lowest level logged: info writes one access-log line per request (stdout), "
        "warning and above silence them. uvicorn's own lines start at warning unless "
        "debug or trace.",
    ),
]
LogFormatOption = Annotated[
    LogFormat | None,
    typer.Option(
        case_sensitive=False,
        help="Log lines as text or as one JSON object each (default: json when "
        "litellm_settings.json_logs is true, else text).",
    ),
]
DebugOption = Annotated[
    bool, typer.Option("--debug", help="LiteLLM's --debug: the same as --log-level debug.")
]
DetailedDebugOption = Annotated[
    bool,
    typer.Option(
        "--detailed_debug",
        "--detailed-debug",
        help="LiteLLM's --detailed_debug: debug logs of prismgate, uvicorn and the "
        "libraries it uses.",
    ),
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
    log_level: LogLevelOption = LogLevel.INFO,
    log_format: LogFormatOption = None,
    debug: DebugOption = False,
    detailed_debug: DetailedDebugOption = False,
) -> None:
    """An OpenAI-compatible gateway for image generation and vision.

    `prismgate --config FILE` serves FILE, as `litellm --config FILE` does.
    """
    if ctx.invoked_subcommand is not None:
        return
    if config is None:
        console.print(ctx.get_help())
        raise typer.Exit
    serve(
        config=config, host=host, port=port, workers=workers, insecure=insecure,
        log_level=log_level, log_format=log_format, debug=debug, detailed_debug=detailed_debug,
    )  # fmt: skip


@app.command()
def serve(
    config: ConfigOption = None,
    host: HostOption = "127.0.0.1",
    port: PortOption = 4000,
    workers: WorkersOption = 1,
    insecure: InsecureOption = False,
    log_level: LogLevelOption = LogLevel.INFO,
    log_format: LogFormatOption = None,
    debug: DebugOption = False,
    detailed_debug: DetailedDebugOption = False,
) -> None:
    """Run the OpenAI-compatible proxy."""
    import os

    from prismgate.config import CONFIG_PATH_VARIABLE
    from prismgate.observability.log_config import serve_logging

    # Every check here, once, before any worker starts: a worker never meets a mistake.
    loaded = _checked_serving_config(config)
    assert config is not None
    master_key = loaded.general_settings.master_key
    if master_key is None and not insecure and not _is_loopback(host):
        errors.print(
            f"[red]refusing to listen on {host} without a master key:[/] set "
            "general_settings.master_key, or pass --insecure"
        )
        raise typer.Exit(CONFIG_MISTAKE)
    if master_key == EXAMPLE_MASTER_KEY and not insecure and not _is_loopback(host):
        errors.print(
            f"[red]refusing to listen on {host} with the example master key "
            f"{EXAMPLE_MASTER_KEY}:[/] everyone knows it; set general_settings.master_key "
            "to a secret of your own (os.environ/PRISMGATE_MASTER_KEY), or pass --insecure"
        )
        raise typer.Exit(CONFIG_MISTAKE)
    _check_database(config, loaded)
    from prismgate.proxy import server  # the server's imports, once the config is known good

    try:
        sock = server.bind(host, port)
    except server.PortUnavailable as error:
        errors.print(f"[red]{escape(str(error))}[/]", highlight=False)
        raise typer.Exit(CANNOT_START) from None
    if loaded.unused_settings:
        errors.print(
            "[yellow]warning:[/] ignoring LiteLLM settings prismgate does not act on "
            f"(general_settings.allow_unused_litellm_settings): "
            f"{escape(', '.join(loaded.unused_settings))}",
            highlight=False,
        )
    settings = loaded.general_settings.server
    file_limit = server.raise_file_limit()  # workers inherit it
    guard = server.ConnectionGuard(settings, file_limit)
    bound_port = sock.getsockname()[1]
    address = f"[{host}]" if ":" in host else host

    def announce() -> None:
        groups = list(dict.fromkeys(entry.model_name for entry in loaded.model_list))
        console.print(
            f"prismgate {__version__} listening on http://{address}:{bound_port} "
            f"({workers} worker{'s' if workers > 1 else ''}); "
            f"auth: {'master key' if master_key else 'none'}",
            soft_wrap=True,
            highlight=False,
        )
        if master_key:
            console.print(
                f"console: http://{address}:{bound_port}/ui (sign in with the master key)",
                soft_wrap=True,
                highlight=False,
            )
        console.print(
            f"serving {len(groups)} model groups: {', '.join(groups) or '(none)'}",
            soft_wrap=True,
        )
        console.print(
            f"clients: headers within {settings.header_timeout_seconds:g} s, body within "
            f"{settings.body_timeout_seconds:g} s (+1 s per "
            f"{settings.body_min_bytes_per_second} B), idle "
            f"{settings.keep_alive_timeout_seconds:g} s; at most {guard.max_connections} "
            f"connections per worker (open-file limit {file_limit})",
            soft_wrap=True,
        )

    json_logs = log_format is LogFormat.JSON or (
        log_format is None and loaded.litellm_settings.json_logs
    )
    log_config, uvicorn_level = serve_logging(
        log_level, json=json_logs, debug=debug, detailed_debug=detailed_debug
    )
    os.environ[CONFIG_PATH_VARIABLE] = str(config.resolve())
    with _metrics_folder(workers) as on_worker_exit:
        server.run(
            "prismgate.proxy.app:create_app_from_environment",
            guard=guard,
            sock=sock,
            on_ready=announce,
            on_worker_exit=on_worker_exit,
            factory=True,
            host=host,
            port=bound_port,
            workers=workers,
            loop="uvloop",
            # prismgate's own access log replaces uvicorn's (observability/access_log.py).
            access_log=False,
            log_config=log_config,
            log_level=uvicorn_level,
            server_header=False,
            date_header=False,
            # After SIGTERM (and its shutdown delay) calls in flight get `drain_seconds`,
            # then the app cancels them (proxy/draining.py); uvicorn's deadline is a backstop.
            timeout_graceful_shutdown=settings.drain_seconds + 5,
            # X-Forwarded-* from clients are not trusted (and not parsed on every request).
            proxy_headers=False,
        )


@contextlib.contextmanager
def _metrics_folder(workers: int) -> Iterator[Callable[[int], None] | None]:
    """With several workers, a private folder for their metrics (prometheus-client's
    multiprocess mode), named to the workers by environment and removed at the end;
    yields what to call when a worker dies (its live gauges leave the sums). One worker
    keeps its metrics in memory."""
    import os
    import shutil
    import tempfile

    from prismgate.config import METRICS_FOLDER_VARIABLE

    if workers == 1:
        # A folder left in the environment (another tool's) would hold other numbers.
        os.environ.pop(METRICS_FOLDER_VARIABLE, None)
        yield None
        return
    folder = tempfile.mkdtemp(prefix="prismgate-metrics-")
    os.environ[METRICS_FOLDER_VARIABLE] = folder

    def on_worker_exit(pid: int) -> None:
        from prometheus_client.multiprocess import mark_process_dead

        mark_process_dead(pid, folder)  # type: ignore[no-untyped-call]

    try:
        yield on_worker_exit
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _check_database(path: Path, config: Config) -> None:
    """The database `serve` will open, named as it will be (a URL it cannot use is a
    config mistake, said here rather than by a worker's failed startup)."""
    from prismgate.errors import ConfigError
    from prismgate.storage.sql import database_url

    general = config.general_settings
    try:
        database_url(general.database_url, general.data_dir)
    except ConfigError as error:
        _config_error(path, str(error))
    except OSError as error:
        _config_error(path, f"general_settings.data_dir: cannot use {general.data_dir}: {error}")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


ModelOption = Annotated[str, typer.Option(help="provider/model, or a model group of --config.")]
ParamOption = Annotated[
    list[str] | None,
    typer.Option(
        "--param",
        metavar="KEY=VALUE",
        help="Any other request parameter (repeatable); VALUE is read as JSON when it is "
        'JSON (steps=30, extra={"a": 1}), else as text.',
    ),
]
CallConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", metavar="FILE", help="A LiteLLM-style config.yaml (its model groups)."
    ),
]


@app.command()
def generate(
    ctx: typer.Context,
    prompt: Annotated[str, typer.Argument(help="What to draw.")],
    model: ModelOption = "mock/quickstart",
    n: Annotated[int, typer.Option(help="How many images.")] = 1,
    size: Annotated[str | None, typer.Option(help="WIDTHxHEIGHT, or auto.")] = None,
    quality: Annotated[
        str | None, typer.Option(help="standard, hd, low, medium, high or auto (per model).")
    ] = None,
    style: Annotated[str | None, typer.Option(help="vivid or natural (DALL·E 3).")] = None,
    response_format: Annotated[
        str | None,
        typer.Option(help="b64_json (default) or url: how the images come back; both are saved."),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed, for models that take one.")] = None,
    negative_prompt: Annotated[
        str | None, typer.Option(help="What the image must not show (models that take one).")
    ] = None,
    param: ParamOption = None,
    config: CallConfigOption = None,
    out: Annotated[Path, typer.Option(help="Folder to write the images to.")] = Path("images"),
    inline: Annotated[
        bool | None,
        typer.Option(
            "--inline/--no-inline",
            help="Show the images in the terminal (kitty or iTerm2 image protocol). "
            "Default: on when the terminal is known to show images.",
        ),
    ] = None,
) -> None:
    """Generate images and write each to a file, with a JSON sidecar saying how it was
    made (mock/ models need no key or network)."""
    from prismgate.cli_images import (
        CallRecorder,
        ParamError,
        image_bytes,
        save_images,
        sdk_keywords,
    )
    from prismgate.gateway import Gateway
    from prismgate.sdk import aimage_generation
    from prismgate.types import ImageResponse

    chosen = {
        "n": n,
        "size": size,
        "quality": quality,
        "style": style,
        "response_format": response_format,
        "seed": seed,
        "negative_prompt": negative_prompt,
    }
    # The call made below, as its signature reads it: what a --param must not give again.
    taken = _taken(ctx, aimage_generation, prompt, model=model, gateway=None, **chosen)
    # The command saves whole images; previews are the console's and the SDK's.
    taken |= dict.fromkeys(("stream", "partial_images"), "prismgate generate saves whole images")
    taken["on_progress"] = "prismgate generate shows progress itself"
    try:
        extra = sdk_keywords(aimage_generation, param or (), taken=taken)
    except ParamError as error:
        _command_line_error(error)
    params = {**{k: v for k, v in chosen.items() if v is not None}, **extra}
    loaded = _checked_config(config) if config is not None else _default_config()
    recorder = CallRecorder()

    async def run() -> None:
        async with Gateway(loaded, observers=[recorder]) as gateway:
            what = f"generating {n} image{'s' if n > 1 else ''} with {model}"
            with spinner(what, errors) as progress:
                answer = await aimage_generation(
                    prompt, model=model, gateway=gateway,
                    on_progress=job_progress(progress, what), **params,
                )  # fmt: skip
            assert isinstance(answer, ImageResponse)  # not asked to stream
            response = answer
            images = await image_bytes(response)
        saved = save_images(
            response,
            images,
            out=out,
            call={"prompt": prompt, "model": model, "params": params},
            report=recorder.last,
        )
        table = Table("file", "bytes", "revised prompt")
        for image in saved:
            table.add_row(str(image.path), str(len(image.data)), image.revised_prompt or "")
        console.print(table)
        _show_inline(saved, inline)
        meta, report = response._hidden_params, recorder.last
        if meta is not None:
            cost = "unknown" if meta.response_cost is None else f"${meta.response_cost:.4f}"
            took = f" in {report.latency:.2f} s" if report else ""
            console.print(f"served by {meta.provider}/{meta.model}, cost {cost}{took}")

    _run_call(run)


def _taken(
    ctx: typer.Context, function: Callable[..., Any], *args: Any, **keywords: Any
) -> dict[str, str]:
    """What the call `function(*args, **keywords)` fills (read from its signature), each
    with what to type instead of a `--param` for it: this command's option or argument
    of that name, else nothing (the command sets it)."""
    from prismgate.cli_images import bound_names

    given = {param.name: param for param in ctx.command.params}
    taken = {}
    for name in bound_names(function, *args, **keywords):
        source = given.get(name)
        if source is None:
            taken[name] = f"prismgate {ctx.command.name} sets it itself"
        elif source.param_type_name == "argument":
            taken[name] = f"it is the {name.upper()} argument"
        else:
            taken[name] = f"use {source.opts[0]} instead"
    return taken


def _command_line_error(error: Exception) -> NoReturn:
    errors.print(f"[red]error:[/] {escape(str(error))}", highlight=False)
    raise typer.Exit(CONFIG_MISTAKE) from None


def _default_config() -> Config:
    from prismgate.config import load_config

    return load_config()


def _show_inline(saved: list[Any], inline: bool | None) -> None:
    """The images in the terminal, when asked (--inline) or when it is known to show them."""
    import sys

    from prismgate.config import terminal_hints
    from prismgate.terminal_images import detect_protocol, inline_image

    detected = detect_protocol(terminal_hints())
    if inline is None:
        inline = detected is not None and sys.stdout.isatty()
    if not inline:
        return
    for image in saved:
        sys.stdout.write(inline_image(image.data, detected or "iterm", name=image.path.name))
    sys.stdout.flush()


def _run_call(run: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run one SDK call: a config mistake is exit 2, a refused or failed call (or an
    answer that holds no usable image) exit 1, each one line on stderr."""
    import asyncio

    from prismgate.cli_images import AnswerError
    from prismgate.errors import ConfigError, PrismgateError

    try:
        asyncio.run(run())
    except ConfigError as error:
        _config_error(None, str(error))
    except PrismgateError as error:
        errors.print(
            f"[red]{type(error).__name__}[/] ({error.status_code}): {escape(error.message)}",
            highlight=False,
        )
        raise typer.Exit(1) from None
    except (AnswerError, OSError) as error:
        errors.print(f"[red]error:[/] {escape(str(error))}", highlight=False)
        raise typer.Exit(1) from None


@app.command()
def chat(
    ctx: typer.Context,
    question: Annotated[str, typer.Argument(help="What to ask.")],
    image: Annotated[
        list[Path] | None,
        typer.Option(
            "--image",
            "-i",
            metavar="FILE",
            exists=True,
            dir_okay=False,
            readable=True,
            help="An image file to ask about (repeatable); sent as a data URL.",
        ),
    ] = None,
    model: ModelOption = "mock/llava",
    detail: Annotated[
        str | None, typer.Option(help="low, high or auto: how closely the model looks.")
    ] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Longest answer, in tokens.")] = None,
    param: ParamOption = None,
    config: CallConfigOption = None,
) -> None:
    """Ask a vision model about images: the answer on stdout, who served it on stderr."""
    from prismgate.cli_images import CallRecorder, ParamError, image_data_url, sdk_keywords
    from prismgate.gateway import Gateway
    from prismgate.sdk import acompletion

    # The call made below, as its signature reads it: what a --param must not give again;
    # nor `stream`, whose answer is not one to print.
    taken = _taken(ctx, acompletion, model, [], max_tokens=max_tokens, gateway=None)
    taken["messages"] = "they are the QUESTION argument and the --image files"
    taken["stream"] = "chat prints the whole answer; it does not stream"
    try:
        extra = sdk_keywords(acompletion, param or (), taken=taken)
        urls = [image_data_url(path) for path in image or ()]
    except ParamError as error:
        _command_line_error(error)
    parts: list[dict[str, Any]] = [{"type": "text", "text": question}]
    for url in urls:
        picture: dict[str, Any] = {"url": url}
        if detail is not None:
            picture["detail"] = detail
        parts.append({"type": "image_url", "image_url": picture})
    loaded = _checked_config(config) if config is not None else _default_config()
    recorder = CallRecorder()

    async def run() -> None:
        async with Gateway(loaded, observers=[recorder]) as gateway:
            with spinner(f"asking {model}", errors):
                answer: Any = await acompletion(
                    model,
                    [{"role": "user", "content": parts}],
                    max_tokens=max_tokens,
                    gateway=gateway,
                    **extra,
                )
        console.print(answer.choices[0].message.content or "", soft_wrap=True, markup=False)
        meta, report = answer._hidden_params, recorder.last
        if meta is not None:
            cost = "unknown" if meta.response_cost is None else f"${meta.response_cost:.4f}"
            took = f" in {report.latency:.2f} s" if report else ""
            errors.print(
                f"served by {meta.provider}/{meta.model}, cost {cost}{took}", highlight=False
            )

    _run_call(run)


@app.command("check-config")
def check_config(path: Annotated[Path, typer.Argument(help="The config.yaml to check.")]) -> None:
    """Validate a config file as `serve` would, and list the model groups it serves."""
    loaded = _checked_config(path)
    if not _serves_something(loaded):
        _config_error(path, "it serves no models: add model_list entries")
    table = Table("model group", "deployment", "api_base")
    for entry in loaded.model_list:
        params = entry.litellm_params
        table.add_row(entry.model_name, params.model, params.api_base or "(provider default)")
    console.print(table)
    if loaded.unused_settings:
        console.print(
            "ignored (general_settings.allow_unused_litellm_settings): "
            + ", ".join(loaded.unused_settings),
            soft_wrap=True,
            markup=False,
            highlight=False,
        )
    console.print(f"{path}: valid, {len(loaded.model_list)} deployments", soft_wrap=True)


db_app = typer.Typer(
    help="The gateway's database (keys, teams, users, spend).", rich_markup_mode=None
)
keys_app = typer.Typer(
    help="Gateway keys, over the same code as the /key/* routes.", rich_markup_mode=None
)
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
