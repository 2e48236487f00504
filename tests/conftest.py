"""Fixtures shared by every test folder."""

import pytest

from tests.personas import World, make_world


@pytest.fixture
def world(db) -> World:
    return make_world()


@pytest.fixture
def client_for(client):
    """Log a persona in: client_for(world.alice)."""

    def login(user):
        client.force_login(user)
        return client

    return login
