"""The `prismgate` command, run as a user runs it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from typer.testing import CliRunner

import prismgate
from prismgate.cli import app
from tests import processes
from tests.emulators import OpenAIEmulator


def prismgate_command(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", "from prismgate.cli import main; main()", *args]
    return subprocess.run(command, check=False, capture_output=True, text=True, cwd=cwd, timeout=60)


def test_version(tmp_path: Path) -> None:
    done = prismgate_command("--version", cwd=tmp_path)
    assert done.returncode == 0
    assert done.stdout.strip() == f"prismgate {prismgate.__version__}"


def test_generate_writes_real_images(tmp_path: Path) -> None:
    done = prismgate_command(
        "generate", "A cute baby sea otter", "--n", "2", "--size", "320x240", "--out", "out",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    files = sorted((tmp_path / "out").glob("*.png"))
    assert len(files) == 2
    for path in files:
        with Image.open(path) as image:
            assert (image.format, image.size) == ("PNG", (320, 240))
    assert "served by mock/quickstart, cost $0.0000 in " in done.stdout
    # Each image has a sidecar saying how it was made.
    sidecars = sorted((tmp_path / "out").glob("*.json"))
    assert [p.stem for p in sidecars] == [p.stem for p in files]
    first = json.loads(sidecars[0].read_text())
    assert first["prompt"] == "A cute baby sea otter"
    assert first["model"] == "mock/quickstart"
    assert first["params"] == {"n": 2, "size": "320x240"}
    assert first["deployment"] == "mock/quickstart" and first["provider"] == "mock"
    assert first["cost_usd"] == 0.0 and first["images_in_call"] == 2
    assert first["latency_seconds"] >= 0 and len(first["request_id"]) == 32
    assert first["revised_prompt"] == "A cute baby sea otter (drawn by the prismgate mock provider)"
    assert first["file"] == files[0].name and first["index"] == 0
    assert first["media_type"] == "image/png" and first["bytes"] == files[0].stat().st_size


def test_generate_takes_every_option(tmp_path: Path) -> None:
    done = prismgate_command(
        "generate", "an otter", "--size", "64x48", "--quality", "hd", "--style", "natural",
        "--response-format", "url", "--seed", "7", "--negative-prompt", "cats",
        "--param", "output_format=jpeg", "--param", "output_compression=80", "--out", "out",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    [image] = (tmp_path / "out").glob("*.jpg")
    with Image.open(image) as opened:
        assert (opened.format, opened.size) == ("JPEG", (64, 48))
    sidecar = json.loads(image.with_suffix(".json").read_text())
    assert sidecar["params"] == {
        "n": 1, "size": "64x48", "quality": "hd", "style": "natural", "response_format": "url",
        "seed": 7, "negative_prompt": "cats", "output_format": "jpeg", "output_compression": 80,
    }  # fmt: skip
    # The seed reaches the provider: the same seed draws the same image, another does not.
    again = prismgate_command(
        "generate", "an otter", "--size", "64x48", "--seed", "7", "--out", "again", cwd=tmp_path
    )
    other = prismgate_command(
        "generate", "an otter", "--size", "64x48", "--seed", "8", "--out", "other", cwd=tmp_path
    )
    assert again.returncode == other.returncode == 0
    [same] = (tmp_path / "again").glob("*.png")
    [different] = (tmp_path / "other").glob("*.png")
    assert same.read_bytes() != different.read_bytes()
    third = prismgate_command(
        "generate", "an otter", "--size", "64x48", "--seed", "7", "--out", "third", cwd=tmp_path
    )
    assert third.returncode == 0
    assert [p.read_bytes() for p in (tmp_path / "third").glob("*.png")] == [same.read_bytes()]


def test_generate_refuses_a_param_another_option_sets(tmp_path: Path) -> None:
    done = prismgate_command("generate", "x", "--param", "seed=1", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == "error: --param seed: use --seed instead"
    done = prismgate_command("generate", "x", "--param", "steps", cwd=tmp_path)
    assert done.returncode == 2
    assert "--param 'steps': write it as key=value" in done.stderr


@pytest.mark.parametrize(
    ("command", "param", "message"),
    [
        ("generate", "model=foo", "--param model: use --model instead"),
        ("generate", "prompt=a cat", "--param prompt: it is the PROMPT argument"),
        ("generate", "gateway=1", "--param gateway: prismgate generate sets it itself"),
        ("generate", "n=2", "--param n: use --n instead"),
        ("generate", "timeout=soon", "--param timeout: Expected `float | null`, got `str`"),
        ("generate", "drop_params=maybe", "--param drop_params: Expected `bool | null`"),
        ("generate", "stream=true", "--param stream: prismgate generate saves whole images"),
        ("generate", "on_progress=1", "--param on_progress: prismgate generate shows progress"),
        ("chat", "model=foo", "--param model: use --model instead"),
        ("chat", "messages=[]", "--param messages: they are the QUESTION argument and the"),
        ("chat", "max_tokens=5", "--param max_tokens: use --max-tokens instead"),
        ("chat", "gateway=1", "--param gateway: prismgate chat sets it itself"),
        ("chat", "stream=true", "--param stream: chat prints the whole answer; it does not"),
        ("chat", "temperature=warm", "--param temperature: Expected `float | null`, got `str`"),
    ],
)
def test_a_param_the_call_cannot_take_is_one_line_and_exit_2(
    command: str, param: str, message: str
) -> None:
    """Each refused before any call: the command's own arguments (read from the SDK
    function's signature), `stream` in chat, and values of the wrong type."""
    done = CliRunner().invoke(app, [command, "x", "--param", param])
    assert done.exception is None or isinstance(done.exception, SystemExit), done.exception
    assert done.exit_code == 2, done.stderr
    assert done.stderr.startswith(f"error: {message}")
    assert len(done.stderr.strip().splitlines()) == 1
    assert done.stdout == ""


def test_a_param_of_the_sdk_function_takes_its_type(tmp_path: Path) -> None:
    # `user` is text even when it reads as a number; `timeout` a number.
    done = CliRunner().invoke(
        app, ["generate", "x", "--param", "user=123", "--param", "timeout=30", "--out",
              str(tmp_path)],
    )  # fmt: skip
    assert done.exit_code == 0, done.stderr
    [sidecar] = tmp_path.glob("*.json")
    assert json.loads(sidecar.read_text())["params"] == {"n": 1, "user": "123", "timeout": 30.0}


async def test_an_answer_with_bad_base64_is_an_answer_error() -> None:
    from prismgate.cli_images import AnswerError, image_bytes
    from prismgate.types import ImageObject, ImageResponse

    for item in (ImageObject(b64_json="not base64!"), ImageObject(url="data:image/png;base64,a")):
        with pytest.raises(AnswerError, match=r"is not valid base64"):
            await image_bytes(ImageResponse(created=1, data=[item]))
    # Line breaks are base64 too.
    wrapped = ImageResponse(created=1, data=[ImageObject(b64_json="aGVs\nbG8=")])
    assert await image_bytes(wrapped) == [b"hello"]


def test_generate_says_an_answer_with_bad_base64_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import prismgate.sdk
    from prismgate.types import ImageObject, ImageResponse

    async def garbled(prompt: str, model: str | None = None, **kwargs: Any) -> Any:
        return ImageResponse(created=1, data=[ImageObject(b64_json="%%%")])

    monkeypatch.setattr(prismgate.sdk, "aimage_generation", garbled)
    done = CliRunner().invoke(app, ["generate", "x", "--out", str(tmp_path)])
    assert done.exit_code == 1
    assert done.exception is None or isinstance(done.exception, SystemExit), done.exception
    assert done.stderr.startswith("error: the answer's image (b64_json) is not valid base64")
    assert len(done.stderr.strip().splitlines()) == 1


def test_generate_downloads_images_given_as_links(
    tmp_path: Path, openai_emulator: OpenAIEmulator
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "model_list:\n  - model_name: art\n    litellm_params:\n"
        f"      {{model: openai/dall-e-3, api_base: '{openai_emulator.base_url}/v1', "
        f"api_key: {openai_emulator.api_key}}}\n"
    )
    done = prismgate_command(
        "generate", "an otter", "--model", "art", "--config", str(config),
        "--response-format", "url", "--out", "out", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    [image] = (tmp_path / "out").glob("*.png")
    with Image.open(image) as opened:
        assert opened.size == (1024, 1024)
    sidecar = json.loads(image.with_suffix(".json").read_text())
    assert sidecar["url"].startswith(openai_emulator.base_url + "/files/")
    assert sidecar["deployment"] == "openai/dall-e-3" and sidecar["model_group"] == "art"
    assert sidecar["revised_prompt"] == "A detailed rendering of: an otter"
    assert sidecar["cost_usd"] == 0.04


def run_in_terminal(
    *args: str, cwd: Path, env: dict[str, str], stderr_too: bool = True
) -> tuple[int, str, str]:
    """The command with a pseudo-terminal as stdout (and stderr): its exit status, what the
    terminal showed, and what went to the stderr pipe (when the terminal did not get it)."""
    import os
    import pty

    main_fd, terminal = pty.openpty()
    command = [sys.executable, "-c", "from prismgate.cli import main; main()", *args]
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=terminal,
        stderr=terminal if stderr_too else subprocess.PIPE,
    )  # fmt: skip
    os.close(terminal)
    shown = bytearray()
    while True:
        try:
            chunk = os.read(main_fd, 65536)
        except OSError:  # the terminal closed: the process is gone
            break
        if not chunk:
            break
        shown += chunk
    os.close(main_fd)
    stderr = process.stderr.read().decode() if process.stderr else ""
    return process.wait(timeout=60), shown.decode(errors="replace"), stderr


TERMINAL = {"PATH": "/usr/bin:/bin", "TERM": "xterm-256color"}


def test_generate_shows_progress_on_a_terminal(
    tmp_path: Path, openai_emulator: OpenAIEmulator
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "model_list:\n  - model_name: art\n    litellm_params:\n"
        f"      {{model: openai/dall-e-3, api_base: '{openai_emulator.base_url}/v1', "
        f"api_key: {openai_emulator.api_key}}}\n"
    )
    # Long enough for the spinner to be drawn however loaded the machine is; what it shows
    # is checked, not how many seconds went by.
    openai_emulator.fail_next("delay", delay=1.0)
    status, shown, _ = run_in_terminal(
        "generate", "an otter", "--model", "art", "--config", str(config), "--out", "out",
        cwd=tmp_path, env={**TERMINAL, "HOME": str(tmp_path)},
    )  # fmt: skip
    assert status == 0, shown
    assert "generating 1 image with art" in shown
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown)  # without colours
    assert re.search(r"generating 1 image with art \d+:\d\d:\d\d", plain)  # the time spent
    # Piped, it says nothing while it waits.
    piped = prismgate_command("generate", "x", "--out", "out", cwd=tmp_path)
    assert "generating" not in piped.stderr + piped.stdout


def test_generate_shows_images_inline_in_terminals_that_can(tmp_path: Path) -> None:
    base = {**TERMINAL, "HOME": str(tmp_path)}
    kitty = {**base, "KITTY_WINDOW_ID": "1"}
    status, shown, _ = run_in_terminal(
        "generate", "x", "--size", "64x64", cwd=tmp_path, env=kitty, stderr_too=False
    )
    assert status == 0
    assert "\x1b_Ga=T,f=100,m=0;iVBORw0KGgo" in shown  # kitty's protocol, a PNG
    iterm = {**base, "TERM_PROGRAM": "iTerm.app"}
    status, shown, _ = run_in_terminal("generate", "x", cwd=tmp_path, env=iterm, stderr_too=False)
    assert status == 0 and "\x1b]1337;File=inline=1;size=" in shown
    # Off: in other terminals, inside tmux (which passes neither protocol through, while
    # its panes inherit the outer terminal's variables), with --no-inline, and when stdout
    # is not a terminal.
    in_tmux = {**kitty, "LC_TERMINAL": "iTerm2", "TMUX": "/tmp/tmux-1000/default,7,0"}
    for env, flags in ((base, []), (in_tmux, []), (kitty, ["--no-inline"])):
        status, shown, _ = run_in_terminal(
            "generate", "x", *flags, cwd=tmp_path, env=env, stderr_too=False
        )
        assert status == 0 and "\x1b_G" not in shown and "1337;File" not in shown
    piped = subprocess.run(
        [sys.executable, "-c", "from prismgate.cli import main; main()", "generate", "x"],
        cwd=tmp_path, env=kitty, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert piped.returncode == 0 and "\x1b_G" not in piped.stdout
    # --inline forces them, even into a pipe.
    forced = subprocess.run(
        [sys.executable, "-c", "from prismgate.cli import main; main()", "generate", "x",
         "--inline"],
        cwd=tmp_path, env=kitty, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert forced.returncode == 0 and "\x1b_Ga=T,f=100" in forced.stdout


def test_chat_asks_about_an_image(tmp_path: Path) -> None:
    picture = tmp_path / "otter.png"
    Image.new("RGB", (40, 30), "teal").save(picture)
    done = prismgate_command("chat", "--image", str(picture), "What is this?", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "I see 1 image(s): 40x30 image/png. You said: What is this?\n"
    assert "served by mock/llava, cost $0.0000 in " in done.stderr
    # Through a config's model group, with two images.
    done = prismgate_command(
        "chat", "-i", str(picture), "-i", str(picture), "--model", "llava-hf",
        "--config", str(QUICKSTART), "Which is bigger?", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("I see 2 image(s): 40x30 image/png; 40x30 image/png.")
    not_an_image = tmp_path / "notes.txt"
    not_an_image.write_text("hello")
    done = prismgate_command("chat", "--image", str(not_an_image), "What?", cwd=tmp_path)
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        == f"error: {not_an_image} is not an image (PNG, JPEG, WebP, GIF or HEIC)"
    )


def test_help_has_text_for_every_option_and_no_bool_placeholders() -> None:
    import typer

    def commands(command: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
        found = [(path, command)]
        for name, sub in getattr(command, "commands", {}).items():  # a group
            found += commands(sub, (*path, name))
        return found

    listed = commands(typer.main.get_command(app))
    assert {" ".join(path) for path, _ in listed} >= {
        "", "serve", "generate", "chat", "check-config", "db upgrade", "keys create",
    }  # fmt: skip
    runner = CliRunner()
    for path, command in listed:
        for param in command.params:
            assert getattr(param, "help", None), (path, param.name)
        done = runner.invoke(app, [*path, "--help"])
        assert done.exit_code == 0, done.stderr
        assert "<bool>" not in done.stdout, path
    assert "--inline / --no-inline" in runner.invoke(app, ["generate", "--help"]).stdout


def test_kitty_images_are_sent_in_chunks() -> None:
    import io
    import random

    from prismgate.terminal_images import detect_protocol, inline_image

    noise = Image.frombytes("RGB", (64, 64), random.Random(1).randbytes(64 * 64 * 3))
    png = io.BytesIO()
    noise.save(png, format="PNG")
    shown = inline_image(png.getvalue(), "kitty")
    chunks = shown.strip().split("\x1b\\")[:-1]
    assert len(chunks) > 2
    assert chunks[0].startswith("\x1b_Ga=T,f=100,m=1;")
    assert all(c.startswith("\x1b_Gm=1;") for c in chunks[1:-1])
    assert chunks[-1].startswith("\x1b_Gm=0;")
    assert all(len(c.split(";", 1)[1]) <= 4096 for c in chunks)
    jpeg = io.BytesIO()
    noise.save(jpeg, format="JPEG")
    assert inline_image(jpeg.getvalue(), "kitty").startswith("\x1b_Ga=T,f=100,m=1;iVBORw0KGgo")
    assert detect_protocol({"TERM": "xterm-kitty"}) == "kitty"
    assert detect_protocol({"LC_TERMINAL": "iTerm2"}) == "iterm"
    assert detect_protocol({"TERM": "xterm-256color"}) is None
    tmux = {"TMUX": "/tmp/tmux-1000/default,7,0", "TERM": "tmux-256color"}
    assert detect_protocol({**tmux, "KITTY_WINDOW_ID": "1", "TERM_PROGRAM": "tmux"}) is None
    assert detect_protocol({**tmux, "LC_TERMINAL": "iTerm2"}) is None


def test_the_terminal_hints_say_when_it_is_tmux(monkeypatch: pytest.MonkeyPatch) -> None:
    from prismgate.config import terminal_hints

    monkeypatch.setenv("TMUX", "/tmp/tmux-1000/default,7,0")
    monkeypatch.setenv("KITTY_WINDOW_ID", "1")
    hints = terminal_hints()
    assert hints["TMUX"] and hints["KITTY_WINDOW_ID"] == "1"


def test_generate_reports_errors_without_a_traceback(tmp_path: Path) -> None:
    done = prismgate_command("generate", "x", "--model", "mock/x", "--size", "huge", cwd=tmp_path)
    assert done.returncode == 1
    assert "BadRequestError (400): size 'huge' is not of the form WIDTHxHEIGHT" in done.stderr
    assert "Traceback" not in done.stderr


def test_check_config(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(
        "model_list:\n  - model_name: otters\n    litellm_params: {model: mock/otters}\n"
    )
    done = prismgate_command("check-config", str(good), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "otters" in done.stdout and "valid, 1 deployments" in done.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_list:\n  - model_name: otters\n    litellm_params: {model: 3}\n")
    done = prismgate_command("check-config", str(bad), cwd=tmp_path)
    assert done.returncode == 2
    assert "model_list[0].litellm_params.model: Expected `str`, got `int`" in done.stderr


QUICKSTART = Path(__file__).parents[1] / "examples" / "quickstart.yaml"


def free_port() -> int:
    return processes.free_port()  # each xdist worker its own ports


@pytest.mark.parametrize("form", [["serve", "--config"], ["--config"]])
def test_serve_starts_the_proxy(tmp_path: Path, form: list[str]) -> None:
    import time

    import httpx

    port = free_port()
    command = [sys.executable, "-c", "from prismgate.cli import main; main()", *form,
               str(QUICKSTART), "--port", str(port)]  # fmt: skip
    server = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/health/liveliness")
                break
            except httpx.TransportError:
                assert server.poll() is None, "the server exited"
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.1)
        assert answer.json() == "I'm alive!"
        image = httpx.post(
            f"http://127.0.0.1:{port}/v1/images/generations",
            json={"model": "dall-e-3", "prompt": "A cute baby sea otter", "size": "1024x1024"},
            headers={"Authorization": "Bearer sk-1234"},  # the quickstart's example key
        )
        assert image.status_code == 200
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=10)
    assert f"listening on http://127.0.0.1:{port} (1 worker); auth: master key" in output
    assert f"console: http://127.0.0.1:{port}/ui (sign in with the master key)" in output
    assert "serving 3 model groups: dall-e-3, gpt-image-1, llava-hf" in output


def test_a_busy_port_is_one_line_and_exit_3(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = prismgate_command(
            "serve", "--config", str(QUICKSTART), "--port", str(port), cwd=tmp_path
        )
    assert done.returncode == 3
    assert done.stdout == ""
    assert done.stderr == (
        f"cannot listen on 127.0.0.1:{port}: the port is in use (another server listens "
        "there); stop it, or pick another --port\n"
    )


@pytest.mark.parametrize("workers", ["1", "2"])
def test_listening_is_said_once_the_port_answers(tmp_path: Path, workers: str) -> None:
    import re

    import httpx

    config = tmp_path / "config.yaml"
    config.write_text(
        "model_list: [{model_name: art, litellm_params: {model: mock/dall-e-3}}]\n"
        "general_settings:\n  alerting: [slack]\n  allow_unused_litellm_settings: true\n"
        f"  data_dir: {tmp_path / 'data'}\n"
    )
    command = [sys.executable, "-c", "from prismgate.cli import main; main()", "serve",
               "--config", str(config), "--port", "0", "--workers", workers]  # fmt: skip
    server = subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        first = server.stdout.readline()
        found = re.search(r"listening on http://127\.0\.0\.1:(\d+) \((\d) workers?\)", first)
        assert found, first
        assert found.group(2) == workers
        # Said once the server answers: the first request, at once, is served.
        answer = httpx.get(f"http://127.0.0.1:{found.group(1)}/health/liveliness", timeout=10)
        assert answer.status_code == 200
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=30)
    warnings = [line for line in stderr.splitlines() if "ignoring LiteLLM settings" in line]
    assert warnings == [
        "warning: ignoring LiteLLM settings prismgate does not act on "
        "(general_settings.allow_unused_litellm_settings): general_settings.alerting"
    ]


def test_serve_refuses_open_network_without_a_master_key(tmp_path: Path) -> None:
    open_config = tmp_path / "open.yaml"
    open_config.write_text(
        "model_list:\n  - model_name: otters\n    litellm_params: {model: mock/otters}\n"
    )
    done = prismgate_command(
        "serve", "--config", str(open_config), "--host", "0.0.0.0", cwd=tmp_path
    )
    assert done.returncode == 2
    assert "refusing to listen on 0.0.0.0 without a master key" in done.stderr


def test_serve_refuses_open_network_with_the_quickstarts_example_key(tmp_path: Path) -> None:
    done = prismgate_command(
        "serve", "--config", str(QUICKSTART), "--host", "0.0.0.0", cwd=tmp_path
    )
    assert done.returncode == 2
    assert "refusing to listen on 0.0.0.0 with the example master key sk-1234" in done.stderr


def test_serve_names_the_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "model_list:\n  - model_name: x\n    litellm_params: {model: mock/x, timeout: soon}\n"
    )
    done = prismgate_command("serve", "--config", str(bad), cwd=tmp_path)
    assert done.returncode == 2
    assert "model_list[0].litellm_params.timeout: Expected `float | null`, got `str`" in done.stderr


def test_serve_names_an_unresolvable_model(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_list:\n  - model_name: x\n    litellm_params: {model: dall-e-9}\n")
    for command in (("serve", "--config", str(bad)), ("check-config", str(bad))):
        done = prismgate_command(*command, cwd=tmp_path)
        assert done.returncode == 2
        assert (
            "model_list[0].litellm_params.model: cannot tell which provider serves" in done.stderr
        )


def test_keys_are_made_listed_and_revoked_from_the_command_line(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "model_list: [{model_name: otters, litellm_params: {model: mock/otters}}]\n"
        f"general_settings: {{database_url: 'sqlite:///{tmp_path / 'gateway.db'}'}}\n"
    )
    upgraded = prismgate_command("db", "upgrade", "-c", str(config), cwd=tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    made = prismgate_command(
        "keys", "create", "-c", str(config), "--alias", "bot", "--max-budget", "2",
        "--ipm-limit", "5", cwd=tmp_path,
    )  # fmt: skip
    key = made.stdout.strip()
    assert made.returncode == 0 and key.startswith("sk-")
    listed = prismgate_command("keys", "list", "-c", str(config), cwd=tmp_path)
    assert "bot" in listed.stdout and f"sk-...{key[-4:]}" in listed.stdout
    assert key not in listed.stdout  # shown once, when made
    info = prismgate_command("keys", "info", key, "-c", str(config), cwd=tmp_path)
    assert '"ipm_limit": 5' in info.stdout and '"max_budget": 2.0' in info.stdout
    assert prismgate_command("keys", "revoke", key, "-c", str(config), cwd=tmp_path).returncode == 0
    gone = prismgate_command("keys", "info", key, "-c", str(config), cwd=tmp_path)
    assert gone.returncode == 1 and "deleted" in gone.stderr
