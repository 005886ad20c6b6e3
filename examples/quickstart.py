"""The SDK quickstart on embedded defaults: the built-in mock provider, no key, no network.

python examples/quickstart.py
"""

from prismgate import image_generation

response = image_generation(prompt="A cute baby sea otter", model="mock/dall-e-3")
print(f"{len(response.data)} image, {len(response.data[0].b64_json or '')} base64 characters")
print(f"revised prompt: {response.data[0].revised_prompt}")
print(f"served by: {response._hidden_params}")
