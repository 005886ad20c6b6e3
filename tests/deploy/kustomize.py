"""A small Kustomize renderer, for the kustomizations under deploy/kubernetes only.

CI has no kustomize, so the tests render the base and the overlays here, and check what
comes out. It does what our kustomization files ask for, and refuses everything else
with `Unsupported` (so a new feature in a kustomization fails the tests until this file
learns it, rather than being skipped silently):

- `resources`: YAML files (several documents each) and folders holding a kustomization;
- `namespace`: set on every object (all of ours are namespaced);
- `labels` with `pairs` only: added to `metadata.labels` (kustomize's default without
  `includeSelectors` / `includeTemplates`, both refused);
- `images`: `newName`, `newTag`, `digest` on the containers of pod templates;
- `patches` given by `path`, each a strategic-merge patch naming its object by kind and
  name, made of mappings only: a list in a patch is refused (kustomize merges lists by
  key, which this file does not);
- `secretGenerator` with `envs` and `literals`, and `disableNameSuffixHash: true` only (the
  content hash and the rewriting of references to it are not done here).

Where kubectl is installed, tests/deploy/test_packaging.py also compares this output with
`kubectl kustomize`, object by object.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml

__all__ = ["Unsupported", "render"]

Object = dict[str, Any]

_KNOWN = {
    "apiVersion",
    "kind",
    "resources",
    "namespace",
    "labels",
    "images",
    "patches",
    "secretGenerator",
}
_POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


class Unsupported(Exception):
    """A kustomization asks for something this renderer does not do."""


def render(folder: Path) -> list[Object]:
    """The objects the kustomization in `folder` makes, as `kubectl kustomize` would."""
    spec = yaml.safe_load((folder / "kustomization.yaml").read_text(encoding="utf-8"))
    unknown = sorted(set(spec) - _KNOWN)
    if unknown:
        raise Unsupported(f"{folder}: {', '.join(unknown)}")
    objects: list[Object] = []
    for entry in spec.get("resources", []):
        path = folder / entry
        if path.is_dir():
            objects += render(path)
        else:
            text = path.read_text(encoding="utf-8")
            objects += [doc for doc in yaml.safe_load_all(text) if doc]
    objects += [_secret(folder, generator) for generator in spec.get("secretGenerator", [])]
    for patch in spec.get("patches", []):
        _patch(folder, patch, objects)
    if "namespace" in spec:
        for obj in objects:
            obj["metadata"]["namespace"] = spec["namespace"]
    for entry in spec.get("labels", []):
        _label(entry, objects)
    for image in spec.get("images", []):
        _set_image(image, objects)
    return objects


def _secret(folder: Path, generator: dict[str, Any]) -> Object:
    unknown = sorted(set(generator) - {"name", "envs", "literals", "type", "options"})
    options = generator.get("options", {})
    if unknown or options != {"disableNameSuffixHash": True}:
        raise Unsupported(
            f"secretGenerator {generator.get('name')}: only envs, literals, type and "
            "options.disableNameSuffixHash: true"
        )
    pairs = list(generator.get("literals", []))
    for name in generator.get("envs", []):
        lines = (folder / name).read_text(encoding="utf-8").splitlines()
        pairs += [line for line in lines if line.strip() and not line.startswith("#")]
    data = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        data[key.strip()] = base64.b64encode(value.encode()).decode()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": generator["name"]},
        "type": generator.get("type", "Opaque"),
        "data": data,
    }


def _patch(folder: Path, entry: dict[str, Any], objects: list[Object]) -> None:
    if set(entry) != {"path"}:
        raise Unsupported("patches: only `path` (a strategic-merge patch in a file)")
    patch = yaml.safe_load((folder / entry["path"]).read_text(encoding="utf-8"))
    kind, name = patch["kind"], patch["metadata"]["name"]
    targets = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    if len(targets) != 1:
        raise Unsupported(f"patch {entry['path']}: {len(targets)} objects are {kind}/{name}")
    _merge(targets[0], patch, entry["path"])


def _merge(target: dict[str, Any], patch: dict[str, Any], where: str) -> None:
    for key, value in patch.items():
        if isinstance(value, list):
            raise Unsupported(f"patch {where}: {key} is a list (merged by key in kustomize)")
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value, where)
        else:
            target[key] = value


def _label(entry: dict[str, Any], objects: list[Object]) -> None:
    if set(entry) != {"pairs"}:
        raise Unsupported("labels: only `pairs` (no includeSelectors, includeTemplates)")
    for obj in objects:
        obj["metadata"].setdefault("labels", {}).update(entry["pairs"])


def _set_image(image: dict[str, Any], objects: list[Object]) -> None:
    unknown = sorted(set(image) - {"name", "newName", "newTag", "digest"})
    if unknown:
        raise Unsupported(f"images: {', '.join(unknown)}")
    for obj in objects:
        if obj["kind"] not in _POD_TEMPLATE_KINDS:
            continue
        pod = obj["spec"]["template"]["spec"]
        for container in pod.get("containers", []) + pod.get("initContainers", []):
            name, tag = _split_image(container["image"])
            if name != image["name"]:
                continue
            name = image.get("newName", name)
            if "digest" in image:
                container["image"] = f"{name}@{image['digest']}"
            elif "newTag" in image:
                container["image"] = f"{name}:{image['newTag']}"
            else:
                container["image"] = name + tag


def _split_image(reference: str) -> tuple[str, str]:
    """`registry:5000/name:tag@digest` → (`registry:5000/name`, `:tag@digest`)."""
    at = reference.find("@")
    head, digest = (reference, "") if at < 0 else (reference[:at], reference[at:])
    colon = head.rfind(":")
    if colon > head.rfind("/"):
        return head[:colon], head[colon:] + digest
    return head, digest
