"""What the Models page reads: `/model/info` names each deployment by the id
`/model/status` gives it (`model_info.model_id`), so the page pairs a deployment's
settings with its state by id, even for two deployments of the same model."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.proxy.conftest import MASTER_KEY, RunningProxy, model

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}


def test_model_info_and_model_status_name_deployments_alike(
    serve: Callable[..., RunningProxy],
) -> None:
    proxy = serve(
        {
            "model_list": [
                model("otters", "mock/otters", api_base="http://127.0.0.1:9/east"),
                model("herons", "mock/herons"),
                # The same model again, elsewhere: told apart by id, not by name.
                model("otters", "mock/otters", api_base="http://127.0.0.1:9/west"),
            ],
            "general_settings": {"master_key": MASTER_KEY},
        }
    )
    infos = httpx.get(proxy.base_url + "/model/info", headers=ADMIN).json()["data"]
    states = httpx.get(proxy.base_url + "/model/status", headers=ADMIN).json()["data"]
    where = {
        info["model_info"]["model_id"]: info["litellm_params"].get("api_base") for info in infos
    }
    assert len(where) == len(infos) == 3
    assert sorted(where) == sorted(state["model_id"] for state in states)
    by_label = {state["label"]: state["model_id"] for state in states}
    assert where[by_label["model_list[0]"]] == "http://127.0.0.1:9/east"
    assert where[by_label["model_list[1]"]] is None
    assert where[by_label["model_list[2]"]] == "http://127.0.0.1:9/west"
