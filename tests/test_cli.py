"""The `prismgate` command, run as a user runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import prismgate


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
    files = sorted((tmp_path / "out").iterdir())
    assert len(files) == 2
    for path in files:
        with Image.open(path) as image:
            assert (image.format, image.size) == ("PNG", (320, 240))
    assert "served by mock/quickstart, cost $0.0000" in done.stdout


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
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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
            json={"model": "dall-e-3", "prompt": "A cute baby sea otter", "size": "64x64"},
        )
        assert image.status_code == 200
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=10)
    assert f"listening on http://127.0.0.1:{port} (1 worker); auth: none" in output
    assert "serving 3 model groups: dall-e-3, gpt-image-1, llava-hf" in output


def test_serve_refuses_open_network_without_a_master_key(tmp_path: Path) -> None:
    done = prismgate_command(
        "serve", "--config", str(QUICKSTART), "--host", "0.0.0.0", cwd=tmp_path
    )
    assert done.returncode == 2
    assert "refusing to listen on 0.0.0.0 without a master key" in done.stderr


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
