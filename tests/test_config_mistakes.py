"""Config mistakes, as an operator makes them: each one is exit status 2 from
`prismgate check-config` and from `prismgate serve`, with one message naming the problem
and never a traceback. `serve` runs as the real command in its own process; `check-config`
through typer's runner (the same code, without a process start per case)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prismgate.cli import app

MOCK = "model_list:\n  - model_name: images\n    litellm_params: {model: mock/dall-e-3}\n"

# (id, the file's text, a part of the message the operator must see)
MISTAKES: list[tuple[str, str | bytes, str]] = [
    ("top-level typo", "modle_list: []\n",
     "modle_list: not a setting; did you mean model_list?"),
    ("top-level key in the wrong section", MOCK + "master_key: sk-1\n",
     "master_key: not a setting here; it belongs in general_settings.master_key"),
    ("general_settings typo", MOCK + "general_settings: {master_kye: sk-1}\n",
     "general_settings.master_kye: not a setting; did you mean master_key?"),
    ("general_settings nested typo", MOCK + "general_settings: {media: {max_image_byte: 5}}\n",
     "general_settings.media.max_image_byte: not a setting; did you mean max_image_bytes?"),
    ("router_settings typo", MOCK + "router_settings: {routing_stratgy: least-busy}\n",
     "router_settings.routing_stratgy: not a setting; did you mean routing_strategy?"),
    ("router key in general_settings", MOCK + "general_settings: {num_retries: 2}\n",
     "general_settings.num_retries: not a setting here; it belongs in router_settings.num_retries"),
    ("litellm_settings typo", MOCK + "litellm_settings: {drop_param: true}\n",
     "litellm_settings.drop_param: not a setting; did you mean drop_params?"),
    ("cache_params typo", MOCK + "litellm_settings: {cache: true, cache_params: {hots: redis}}\n",
     "litellm_settings.cache_params.hots: not a setting; did you mean host?"),
    ("cache call type typo",
     MOCK + "litellm_settings: {cache_params: {supported_call_types: [image_generaton]}}\n",
     "'image_generaton' is not a call type; did you mean image_generation?"),
    ("model entry typo", "model_list:\n  - model_nmae: x\n    litellm_params: {model: mock/x}\n",
     "model_list[0].model_nmae: not a setting; did you mean model_name?"),
    ("litellm_params typo",
     "model_list:\n  - model_name: x\n    litellm_params: {model: mock/x, api_bse: http://h}\n",
     "model_list[0].litellm_params.api_bse: not a setting; did you mean api_base?"),
    ("litellm_params swapped letters",
     "model_list:\n  - model_name: x\n    litellm_params: {model: mock/x, rmp: 5}\n",
     "model_list[0].litellm_params.rmp: not a setting; did you mean rpm?"),
    ("deployment setting beside litellm_params",
     "model_list:\n  - model_name: x\n    api_base: http://h\n"
     "    litellm_params: {model: mock/x}\n",
     "model_list[0].api_base: not a setting here; it belongs in model_list[0].litellm_params"),
    ("model_info typo",
     MOCK + "    model_info: {supports_vison: true}\n",
     "model_list[0].model_info.supports_vison: not a setting; did you mean supports_vision?"),
    ("model_info.image typo",
     MOCK + "    model_info: {image: {size: [64x64]}}\n",
     "model_list[0].model_info.image.size: not a setting; did you mean sizes?"),
    ("LiteLLM general setting not acted on", MOCK + "general_settings: {alerting: [slack]}\n",
     "LiteLLM settings that prismgate does not act on: general_settings.alerting. Remove them, "
     "or set general_settings.allow_unused_litellm_settings: true"),
    ("LiteLLM callback prismgate lacks", MOCK + "litellm_settings: {callbacks: [langfuse]}\n",
     "litellm_settings.callbacks[0]: 'langfuse' is not a callback prismgate has; it has "
     "otel (OpenTelemetry traces), generic_api"),
    ("LiteLLM fallbacks in litellm_settings",
     MOCK + "litellm_settings: {fallbacks: [{images: [images]}]}\n",
     "litellm_settings.fallbacks (prismgate reads router_settings.fallbacks)"),
    ("LiteLLM litellm_params not acted on",
     "model_list:\n  - model_name: x\n    litellm_params: {model: mock/x, tags: [free]}\n",
     "does not act on: model_list[0].litellm_params.tags"),
    ("unknown routing strategy", MOCK + "router_settings: {routing_strategy: fastest-first}\n",
     "router_settings.routing_strategy: unknown strategy 'fastest-first'; prismgate has "
     "simple-shuffle, least-busy"),
    ("routing strategy spelt with underscores",
     MOCK + "router_settings: {routing_strategy: least_busy}\n",
     "unknown strategy 'least_busy'; did you mean 'least-busy'?"),
    ("LiteLLM strategy prismgate lacks",
     MOCK + "router_settings: {routing_strategy: cost-based-routing}\n",
     "unknown strategy 'cost-based-routing'; prismgate has"),
    ("fallback to a missing group", MOCK + "router_settings: {fallbacks: [{images: [imgs]}]}\n",
     "router_settings.fallbacks[0]: 'imgs' is not a model_name in model_list; did you mean "
     "'images'?"),
    ("alias to a missing group", MOCK + "router_settings: {model_group_alias: {art: imagez}}\n",
     "router_settings.model_group_alias.art: 'imagez' is not a model_name in model_list; did "
     "you mean 'images'?"),
    ("wrong type: a timeout in words",
     "model_list:\n  - model_name: x\n    litellm_params: {model: mock/x, timeout: soon}\n",
     "model_list[0].litellm_params.timeout: Expected `float | null`, got `str`"),
    ("wrong type: a provider setting",
     "model_list:\n  - model_name: x\n"
     "    litellm_params: {model: bedrock/amazon.nova-canvas-v1:0, aws_region_name: [us]}\n",
     "model_list[0].litellm_params.aws_region_name: bedrock setting aws_region_name: Expected "
     "`str | null`, got `array`"),
    ("wrong type: a size in words", MOCK + "general_settings: {max_request_size_mb: big}\n",
     "general_settings.max_request_size_mb: Expected `float`, got `str`"),
    ("wrong type: model_list as a mapping", "model_list: {images: mock/x}\n",
     "model_list: Expected `array`, got `object`"),
    ("wrong type: a flag in words", MOCK + "litellm_settings: {drop_params: sometimes}\n",
     "litellm_settings.drop_params: Expected `bool`, got `str`"),
    ("out of range: a negative cooldown", MOCK + "router_settings: {cooldown_time: -1}\n",
     "router_settings.cooldown_time: Expected `float` >= 0.0"),
    ("missing litellm_params", "model_list:\n  - model_name: x\n",
     "model_list[0]: Object missing required field `litellm_params`"),
    ("unknown provider model",
     "model_list:\n  - model_name: x\n    litellm_params: {model: dall-e-9}\n",
     "model_list[0].litellm_params.model: cannot tell which provider serves"),
    ("missing environment variable",
     "model_list:\n  - model_name: x\n"
     "    litellm_params: {model: openai/dall-e-3, api_key: os.environ/PRISMGATE_TEST_NOPE}\n",
     "model_list[0].litellm_params.api_key: environment variable PRISMGATE_TEST_NOPE is not set"),
    ("environment_variables as a list", MOCK + "environment_variables: [A]\n",
     "environment_variables: Expected a mapping of names to values"),
    ("no models", "general_settings: {master_key: sk-1}\n",
     "it serves no models: add model_list entries"),
    ("an empty file", "", "it serves no models"),
    ("bad YAML", "model_list:\n  - [unclosed\n", "is not valid YAML at line 3, column 1"),
    ("a key written twice", MOCK + "general_settings: {}\ngeneral_settings: {}\n",
     "is not valid YAML at line 5, column 1: 'general_settings' is written twice (first at "
     "line 4)"),
    ("a list at the top level", "- model_name: x\n",
     "the config must be a mapping at the top level"),
    ("not text", b"\xff\xfe\x00model_list", "it is not UTF-8 text"),
    ("an S3 image store without a bucket", MOCK + "general_settings: {image_store: {type: s3}}\n",
     "general_settings.image_store: type: s3 needs a bucket"),
    ("a private host that is not a host",
     MOCK + "general_settings: {media: {allowed_hosts: ['http://x/y']}}\n",
     "general_settings.media.allowed_hosts[0]: 'http://x/y' is not a host or host:port"),
    ("a short encryption key", MOCK + "general_settings: {encryption_key: short}\n",
     "general_settings.encryption_key: an encryption key needs at least"),
    ("api_base with credentials",
     "model_list:\n  - model_name: x\n"
     "    litellm_params: {model: openai/x, api_base: 'https://u:p@h/v1', api_key: k}\n",
     "api_base must not carry credentials"),
]  # fmt: skip

IDS = [case[0] for case in MISTAKES]
BY_ID = {case[0]: case[1:] for case in MISTAKES}


def _write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "config.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def _one_paragraph(stderr: str) -> None:
    assert "Traceback" not in stderr
    assert stderr.strip(), "nothing said"
    assert "\n\n" not in stderr.strip(), stderr


@pytest.mark.parametrize(("text", "message"), [case[1:] for case in MISTAKES], ids=IDS)
def test_check_config_refuses(tmp_path: Path, text: str | bytes, message: str) -> None:
    path = _write(tmp_path, text)
    done = CliRunner().invoke(app, ["check-config", str(path)], env={"PRISMGATE_TEST_NOPE": None})
    assert done.exit_code == 2, done.stdout + done.stderr
    assert done.exception is None or isinstance(done.exception, SystemExit)
    _one_paragraph(done.stderr)
    assert f"config error in {path}: " in done.stderr
    assert message in done.stderr
    assert "valid" not in done.stdout


def _never_bind(host: str, port: int) -> None:
    raise AssertionError(f"serve went on to listen on {host}:{port}: the mistake slipped through")


@pytest.mark.parametrize(("text", "message"), [case[1:] for case in MISTAKES], ids=IDS)
def test_serve_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str | bytes, message: str
) -> None:
    from prismgate.proxy import server

    # In this process, a mistake that slipped through would serve until the test times
    # out: binding the port fails the test at once instead.
    monkeypatch.setattr(server, "bind", _never_bind)
    path = _write(tmp_path, text)
    done = CliRunner().invoke(
        app, ["serve", "--config", str(path), "--port", "0"], env={"PRISMGATE_TEST_NOPE": None}
    )
    assert done.exception is None or isinstance(done.exception, SystemExit), done.exception
    assert done.exit_code == 2, done.stdout + done.stderr
    _one_paragraph(done.stderr)
    assert message in done.stderr
    assert "listening" not in done.stdout


# The same refusals from the real command in its own process, for one mistake of each kind.
IN_A_PROCESS = [
    "top-level typo", "litellm_params typo", "LiteLLM general setting not acted on",
    "unknown routing strategy", "wrong type: a timeout in words", "missing environment variable",
    "no models", "bad YAML", "not text", "a short encryption key",
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "message"), [BY_ID[name] for name in IN_A_PROCESS], ids=IN_A_PROCESS
)
def test_serve_refuses_in_its_own_process(tmp_path: Path, text: str | bytes, message: str) -> None:
    path = _write(tmp_path, text)
    command = [sys.executable, "-c", "from prismgate.cli import main; main()", "serve",
               "--config", str(path), "--port", "0"]  # fmt: skip
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        command, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60, check=False
    )
    assert done.returncode == 2, done.stdout + done.stderr
    _one_paragraph(done.stderr)
    assert message in done.stderr
    assert done.stdout == ""


def test_several_mistakes_are_named_at_once(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        MOCK + "general_settings: {master_kye: x, alerting: [slack]}\n"
        "router_settings: {routing_stratgy: least-busy}\n",
    )
    done = CliRunner().invoke(app, ["check-config", str(path)])
    assert done.exit_code == 2
    lines = done.stderr.strip().splitlines()
    assert lines[0] == f"config error in {path}: 3 problems:"
    assert lines[1:] == [
        "  general_settings.master_kye: not a setting; did you mean master_key?",
        "  router_settings.routing_stratgy: not a setting; did you mean routing_strategy?",
        "  LiteLLM settings that prismgate does not act on: general_settings.alerting. Remove "
        "them, or set general_settings.allow_unused_litellm_settings: true to start with them "
        "ignored",
    ]


def test_serve_without_a_config_says_so(tmp_path: Path) -> None:
    command = [sys.executable, "-c", "from prismgate.cli import main; main()", "serve"]
    done = subprocess.run(
        command, capture_output=True, text=True, cwd=tmp_path, timeout=60, check=False
    )
    assert done.returncode == 2
    assert done.stderr.startswith("no config: prismgate serve needs --config FILE")
    assert "Traceback" not in done.stderr


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    for command in (["check-config", "nope.yaml"], ["serve", "--config", "nope.yaml"]):
        done = CliRunner().invoke(app, command)
        assert done.exit_code == 2
        assert (
            "config error in nope.yaml: cannot read config file nope.yaml: No such file or "
            "directory" in done.stderr
        )


def test_allowed_litellm_settings_pass_check_config_with_a_note(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        MOCK + "general_settings: {alerting: [slack], allow_unused_litellm_settings: true}\n",
    )
    done = CliRunner().invoke(app, ["check-config", str(path)])
    assert done.exit_code == 0, done.stderr
    assert (
        "ignored (general_settings.allow_unused_litellm_settings): general_settings.alerting"
        in done.stdout
    )
    assert f"{path}: valid, 1 deployments" in done.stdout


CANARY = "sk-live-canary-0123456789"

# Values of settings that hold secrets, each mistaken in a way the config check refuses: the
# message names the path and the type, never the value.
SECRET_MISTAKES: list[tuple[str, str]] = [
    ("environment_variables.A", MOCK + f"environment_variables: {{A: {{secret: {CANARY}}}}}\n"),
    ("environment_variables.A", MOCK + f"environment_variables: {{A: [{CANARY}]}}\n"),
    ("environment_variables", MOCK + f"environment_variables: [{CANARY}]\n"),
    ("general_settings.master_key", MOCK + f"general_settings: {{master_key: [{CANARY}]}}\n"),
    ("general_settings.encryption_key",
     MOCK + f"general_settings: {{encryption_key: {{k: {CANARY}}}}}\n"),
    ("general_settings.database_url",
     MOCK + f"general_settings: {{database_url: 'mysql://u:{CANARY}@h/db'}}\n"),
    ("general_settings.database_url",
     MOCK + f"general_settings: {{database_url: 'postgresql://u:{CANARY}@h/db?x={CANARY}'}}\n"),
    ("router_settings.redis_password", MOCK + f"router_settings: {{redis_password: [{CANARY}]}}\n"),
    ("litellm_settings.cache_params.password",
     MOCK + f"litellm_settings: {{cache_params: {{password: [{CANARY}]}}}}\n"),
    ("litellm_params.api_key",
     "model_list: [{model_name: x, litellm_params: "
     f"{{model: openai/x, api_key: [{CANARY}]}}}}]\n"),
    ("litellm_params",
     "model_list: [{model_name: x, litellm_params: "
     f"{{model: openai/x, api_key: k, api_base: 'https://key:{CANARY}/x@h/v1'}}}}]\n"),
    ("litellm_params.aws_bedrock_runtime_endpoint",
     "model_list: [{model_name: x, litellm_params: {model: bedrock/amazon.nova-canvas-v1:0, "
     f"aws_region_name: us-east-1, aws_bedrock_runtime_endpoint: 'https://k:{CANARY}/x@h'}}}}]\n"),
    ("virtual_keys.vk",
     MOCK + f"virtual_keys: {{vk: {{provider: openai, api_key: {{k: {CANARY}}}}}}}\n"),
]  # fmt: skip


@pytest.mark.parametrize(("where", "text"), SECRET_MISTAKES)
def test_a_mistaken_secret_is_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str, text: str
) -> None:
    from prismgate.proxy import server

    monkeypatch.setattr(server, "bind", _never_bind)
    path = _write(tmp_path, text)
    done = CliRunner().invoke(app, ["serve", "--config", str(path)])  # every check serve makes
    assert done.exit_code == 2, done.stdout + done.stderr
    assert where in done.stderr
    assert CANARY not in done.stdout + done.stderr
