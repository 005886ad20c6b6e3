"""The rules every image provider obeys, checked before any upstream call.

They come from the model's `ImageCapabilities` (catalog data), so they hold the same way
for every provider: a value the model cannot honour is a 400 that lists what it accepts,
an unsupported parameter is a 400 unless the caller asked to drop it, and `auto` means
the provider's default. A model with free sizes has size rules (multiples of 16, a
longest side, an aspect ratio and a pixel count) instead of a list, and the 400 states
them. A quality in OpenAI's words for a model with its own words
(`hd` for `premium`) is mapped onto them and reported as adjusted, as a near size is.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import msgspec

from prismgate.catalog import ImageCapabilities, SizeRules
from prismgate.errors import BadRequestError, UnsupportedParamsError
from prismgate.types import ImageEditRequest, ImageRequest, image_params

__all__ = [
    "MAX_IMAGES_PER_REQUEST",
    "CheckedImageRequest",
    "accepts",
    "check_image_request",
    "check_instructed_edit",
    "describe_size_rules",
    "match_aspect_ratio",
    "parse_size",
]

# OpenAI's own ceiling on `n`; models that make fewer per call are fanned out up to it.
MAX_IMAGES_PER_REQUEST = 10
NEAR_RATIO_TOLERANCE = 0.02
_SIZE = re.compile(r"^(\d{1,5})x(\d{1,5})$")

# Parameters the gateway itself fulfils, whatever the model supports.
_GATEWAY_PARAMS = frozenset({"response_format", "n"})


@dataclass(frozen=True, slots=True)
class CheckedImageRequest:
    """The request as the provider will get it, and what was changed on the way.

    `response_format` is removed for models that cannot take it (the caller's wish stays
    on the original request, and the gateway fulfils it).
    """

    request: ImageRequest
    dropped: tuple[str, ...] = ()
    adjusted: tuple[str, ...] = ()


def accepts(capabilities: ImageCapabilities | None, param: str) -> bool:
    """Whether the provider itself takes `param` (unknown models: assume it does)."""
    return capabilities is None or capabilities.params is None or param in capabilities.params


def parse_size(size: str) -> tuple[int, int]:
    """`"1024x768"` → `(1024, 768)`; a 400 naming `size` for anything else."""
    found = _SIZE.match(size)
    if not found or int(found[1]) == 0 or int(found[2]) == 0:
        raise BadRequestError(
            f"size {size!r} is not of the form WIDTHxHEIGHT (for example 1024x1024)",
            param="size",
            code="invalid_value",
        )
    return int(found[1]), int(found[2])


def _ratio_value(ratio: str) -> float:
    width, _, height = ratio.partition(":")
    return float(width) / float(height)


def match_aspect_ratio(size: str, ratios: tuple[str, ...]) -> tuple[str, bool]:
    """The accepted aspect ratio for `size`: `(ratio, exact)`.

    A ratio within 2 % counts (and is reported by the caller as an adjustment); otherwise
    a 400 lists the ratios the model accepts.
    """
    width, height = parse_size(size)
    wanted = width / height
    best = min(ratios, key=lambda r: abs(math.log(_ratio_value(r) / wanted)))
    error = abs(_ratio_value(best) - wanted) / _ratio_value(best)
    if error > NEAR_RATIO_TOLERANCE:
        raise BadRequestError(
            f"size {size!r} has an aspect ratio this model cannot make; it accepts sizes "
            f"with the aspect ratios {', '.join(ratios)}",
            param="size",
            code="invalid_value",
        )
    return best, error < 1e-9


def check_image_request(
    request: ImageRequest,
    capabilities: ImageCapabilities | None,
    *,
    model: str,
    drop_params: bool,
) -> CheckedImageRequest:
    """Check `request` against the model's capabilities; see the module docstring."""
    prompt = getattr(request, "prompt", None)
    if prompt is not None:  # variations have none
        _check_prompt(prompt, capabilities, model)
    n = request.n
    if n is not None and not 1 <= n <= MAX_IMAGES_PER_REQUEST:
        raise BadRequestError(
            f"n must be between 1 and {MAX_IMAGES_PER_REQUEST}; got {n}",
            param="n",
            code="invalid_value",
        )
    if capabilities is None:  # unknown model (self-hosted): the provider decides
        return CheckedImageRequest(request=request)

    changes: dict[str, object] = {}
    dropped: list[str] = []
    adjusted: list[str] = []
    accepted = capabilities.params
    if not accepts(capabilities, "response_format"):
        # The gateway delivers the format itself; the provider must not see the field.
        changes["response_format"] = None
    for name in image_params(type(request)):
        value = getattr(request, name)
        if value is None or name in _GATEWAY_PARAMS:
            continue
        if value == "auto" and not _lists(capabilities, name, "auto"):
            changes[name] = None  # `auto` is the provider's own default
            continue
        if accepted is not None and name not in accepted:
            if drop_params:
                changes[name] = None
                dropped.append(name)
                continue
            raise UnsupportedParamsError(
                f"{model} does not support {name!r}"
                + (f"; it accepts {', '.join(accepted)}" if accepted else "")
                + ". Remove it, or set drop_params=True to drop unsupported parameters.",
                param=name,
            )
        if name == "quality" and (mapped := _quality_alias(str(value), capabilities)):
            changes[name] = value = mapped
            adjusted.append(f"quality={getattr(request, name)}->{mapped}")
        _check_value(name, value, capabilities, model)
        if name == "size" and capabilities.aspect_ratios and not capabilities.sizes:
            ratio, exact = match_aspect_ratio(str(value), capabilities.aspect_ratios)
            if not exact:
                adjusted.append(f"size={value}->aspect_ratio={ratio}")
    checked = msgspec.structs.replace(request, **changes) if changes else request
    return CheckedImageRequest(request=checked, dropped=tuple(dropped), adjusted=tuple(adjusted))


def _quality_alias(value: str, capabilities: ImageCapabilities) -> str | None:
    """The model's own word for OpenAI's quality `value`, when the model has other words."""
    if capabilities.qualities and value in capabilities.qualities:
        return None  # the model's own word, given directly
    return (capabilities.quality_aliases or {}).get(value)


def _check_prompt(prompt: str, capabilities: ImageCapabilities | None, model: str) -> None:
    if not prompt.strip():
        raise BadRequestError("prompt must not be empty", param="prompt", code="invalid_value")
    limit = capabilities.max_prompt_chars if capabilities else None
    if limit is not None and len(prompt) > limit:
        raise BadRequestError(
            f"prompt is {len(prompt)} characters; {model} accepts at most {limit}",
            param="prompt",
            code="string_above_max_length",
        )


_ALLOWED = {
    "quality": "qualities",
    "style": "styles",
    "output_format": "output_formats",
    "background": "backgrounds",
}


def _lists(capabilities: ImageCapabilities, name: str, value: str) -> bool:
    values = _allowed(capabilities, name)
    return values is not None and value in values


def _allowed(capabilities: ImageCapabilities, name: str) -> tuple[str, ...] | None:
    if name == "size":
        return capabilities.sizes
    attribute = _ALLOWED.get(name)
    return getattr(capabilities, attribute) if attribute else None


def _check_value(name: str, value: object, capabilities: ImageCapabilities, model: str) -> None:
    if name == "output_compression" and not (isinstance(value, int) and 0 <= value <= 100):
        raise BadRequestError(
            "output_compression must be between 0 and 100", param=name, code="invalid_value"
        )
    allowed = _allowed(capabilities, name)
    if name == "size" and capabilities.size_rules is not None:
        if allowed is None or value not in allowed:  # named sizes (`auto`) pass as they are
            _check_size_rules(str(value), capabilities.size_rules, allowed, model)
        return
    if allowed is None:
        if name == "size":  # free sizes (or aspect ratios): the form must still be right
            parse_size(str(value))
        return
    if value not in allowed:
        raise BadRequestError(
            f"{name} {value!r} is not available for {model}; it accepts {', '.join(allowed)}",
            param=name,
            code="invalid_value",
        )


def describe_size_rules(rules: SizeRules, named: tuple[str, ...] | None = None) -> str:
    """The sizes `rules` allow, in words: "sizes whose sides are multiples of 16, at
    most 3840 px, with an aspect ratio from 1:3 to 3:1 and 655,360 to 8,294,400 pixels"."""
    sides = []
    if rules.multiple_of:
        sides.append(f"multiples of {rules.multiple_of}")
    if rules.min_edge:
        sides.append(f"at least {rules.min_edge} px")
    if rules.max_edge:
        sides.append(f"at most {rules.max_edge} px")
    text = "sizes" + (f" whose sides are {', '.join(sides)}" if sides else " WIDTHxHEIGHT")
    shape = []
    if rules.max_aspect_ratio:
        ratio = f"{rules.max_aspect_ratio:g}"
        shape.append(f"an aspect ratio from 1:{ratio} to {ratio}:1")
    if rules.min_pixels and rules.max_pixels:
        shape.append(f"{rules.min_pixels:,} to {rules.max_pixels:,} pixels")
    elif rules.min_pixels:
        shape.append(f"at least {rules.min_pixels:,} pixels")
    elif rules.max_pixels:
        shape.append(f"at most {rules.max_pixels:,} pixels")
    if shape:
        text += ", with " + " and ".join(shape)
    if named:
        text += ", or " + ", ".join(named)
    return text


def _check_size_rules(
    size: str, rules: SizeRules, named: tuple[str, ...] | None, model: str
) -> None:
    width, height = parse_size(size)
    problem = _size_problem(width, height, rules)
    if problem is not None:
        raise BadRequestError(
            f"size {size!r} is not available for {model} ({problem}); {model} accepts "
            + describe_size_rules(rules, named),
            param="size",
            code="invalid_value",
        )


def _size_problem(width: int, height: int, rules: SizeRules) -> str | None:
    """What about `width`x`height` breaks `rules`, or None when nothing does."""
    long, short = max(width, height), min(width, height)
    pixels = width * height
    step = rules.multiple_of
    if step and (width % step or height % step):
        return f"its sides are not both multiples of {step}"
    if rules.max_edge and long > rules.max_edge:
        return f"its longer side is {long} px"
    if rules.min_edge and short < rules.min_edge:
        return f"its shorter side is {short} px"
    if rules.max_aspect_ratio and long > short * rules.max_aspect_ratio:
        return f"its aspect ratio is {long / short:.3g}:1"
    if rules.min_pixels and pixels < rules.min_pixels:
        return f"it has {pixels:,} pixels"
    if rules.max_pixels and pixels > rules.max_pixels:
        return f"it has {pixels:,} pixels"
    return None


def check_instructed_edit(request: ImageEditRequest, editor: str, max_images: int) -> None:
    """A 400 for what a model that edits by instruction cannot take: a mask, or more input
    images than `max_images` (`editor` names it in the message)."""
    if request.mask is not None:
        raise UnsupportedParamsError(
            f"{editor} edits by instruction and reference images and takes no mask: "
            "remove the mask and say in the prompt what to change",
            param="mask",
        )
    if len(request.image) > max_images:
        raise UnsupportedParamsError(
            f"{editor} takes at most {max_images} input image{'s' if max_images > 1 else ''}; "
            f"got {len(request.image)}",
            param="image",
        )
