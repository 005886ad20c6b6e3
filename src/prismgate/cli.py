"""The `prismgate` command.

prismgate generate "A cute baby sea otter" --model mock/quickstart --out images/
prismgate check-config config.yaml
prismgate --version
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from prismgate._version import __version__

app = typer.Typer(
    name="prismgate",
    help="An OpenAI-compatible gateway for image generation and vision.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
errors = Console(stderr=True)

_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}


def _version(value: bool) -> None:
    if value:
        console.print(f"prismgate {__version__}")
        raise typer.Exit


@app.callback()
def main_options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """An OpenAI-compatible gateway for image generation and vision."""


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
    from prismgate.config import load_config
    from prismgate.errors import ConfigError

    try:
        loaded = load_config(path)
    except ConfigError as error:
        errors.print(f"[red]config error:[/] {error}")
        raise typer.Exit(2) from None
    table = Table("model group", "deployment", "api_base")
    for entry in loaded.model_list:
        params = entry.litellm_params
        table.add_row(entry.model_name, params.model, params.api_base or "(provider default)")
    console.print(table)
    console.print(f"{path}: valid, {len(loaded.model_list)} deployments")


def main() -> None:
    """Entry point of the `prismgate` command."""
    app()
