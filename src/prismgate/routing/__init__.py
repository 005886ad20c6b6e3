"""Routing: a model name → the deployment that serves it."""

from prismgate.routing.deployments import DeploymentResolver, split_model

__all__ = ["DeploymentResolver", "split_model"]
