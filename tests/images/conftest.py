"""Fixtures shared by the image tests that read the local cluster's node image."""

from __future__ import annotations

import pytest

from ringfleet.providers.docker.engine import docker_client
from ringfleet.providers.docker.images import node_image_tag
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def client():
    return docker_client()


@pytest.fixture(scope="module")
def tag(local_cluster):
    """The tf2.15 node image tag the local cluster's pool `cpu` uses."""
    return node_image_tag(local_cluster, local_cluster.pools["cpu"], ROOT)
