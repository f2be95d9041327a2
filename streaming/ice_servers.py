"""STUN and TURN servers for real networks: one configuration for the service's own peer connections and for
the pages (GET /ice), with time-limited TURN credentials.

A viewer behind carrier NAT, a kiosk on a hotel network or a service in a container cannot always reach the
other side's host candidates; a TURN server relays for them. `AVATAR_ICE_SERVERS` lists the servers as the
browser's RTCIceServer dictionaries (JSON), `AVATAR_ICE_TRANSPORT_POLICY` is `all` or `relay` (relay only:
both sides then offer TURN relay candidates alone).

TURN credentials may be given as they are (a long-lived username and password, which every page then carries)
or, better, minted per page and per peer connection with coturn's "REST API" shared secret
(`AVATAR_TURN_SECRET`, coturn's `static-auth-secret` with `use-auth-secret`): the username is
"<expiry unix time>:<id>" and the password base64(HMAC-SHA1(secret, username)), valid until the expiry.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from typing import Literal

from aiortc import RTCConfiguration, RTCIceServer
from aiortc.rtcconfiguration import RTCIceTransportPolicy
from pydantic import BaseModel, ConfigDict, field_validator

SCHEMES = ("stun", "stuns", "turn", "turns")


class IceServer(BaseModel):
    """One entry of AVATAR_ICE_SERVERS, as the browser's RTCIceServer: `urls`, and for TURN a username and
    credential (leave both out when AVATAR_TURN_SECRET mints them)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None

    @field_validator("urls", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return (value,) if isinstance(value, str) else value

    @field_validator("urls")
    @classmethod
    def _known_schemes(cls, urls: tuple[str, ...]) -> tuple[str, ...]:
        if not urls:
            raise ValueError("an ICE server needs at least one URL")
        for url in urls:
            scheme, _, rest = url.partition(":")
            if scheme not in SCHEMES or not rest or rest.startswith("//"):
                raise ValueError(f"{url!r} is not a STUN or TURN URL (stun:host[:port], "
                                 "turn:host[:port][?transport=udp|tcp], turns:host[:port])")
        return urls

    @property
    def is_turn(self) -> bool:
        return any(url.split(":", 1)[0] in ("turn", "turns") for url in self.urls)


class IceConfig:
    """The ICE servers and policy of one service, checked once; hands out configurations with fresh TURN
    credentials where a shared secret is set."""

    def __init__(self, servers: list[IceServer], policy: Literal["all", "relay"] = "all", turn_secret: str = "",
                 credential_ttl: int = 3600, clock=time.time) -> None:
        if policy not in ("all", "relay"):
            raise ValueError(f"ICE transport policy must be 'all' or 'relay', not {policy!r}")
        for server in servers:
            if server.is_turn and not turn_secret and (server.username is None or server.credential is None):
                raise ValueError(f"TURN server {server.urls[0]!r} needs a username and credential, "
                                 "or AVATAR_TURN_SECRET to mint them")
        if policy == "relay" and not any(server.is_turn for server in servers):
            raise ValueError("ICE transport policy 'relay' needs a TURN server in AVATAR_ICE_SERVERS")
        if credential_ttl < 60:
            raise ValueError("TURN credentials must live at least 60 s")
        self.servers = tuple(servers)
        self.policy = policy
        self._secret = turn_secret.encode()
        self.credential_ttl = credential_ttl
        self._clock = clock

    def turn_credentials(self, user: str | None = None) -> tuple[str, str]:
        """A username and password for coturn's shared-secret scheme, valid for `credential_ttl` seconds."""
        expiry = int(self._clock()) + self.credential_ttl
        username = f"{expiry}:{user or secrets.token_hex(8)}"
        digest = hmac.new(self._secret, username.encode(), hashlib.sha1).digest()
        return username, base64.b64encode(digest).decode()

    def servers_now(self) -> list[IceServer]:
        """The servers, TURN ones with fresh time-limited credentials where the secret mints them."""
        out = []
        for server in self.servers:
            if server.is_turn and self._secret and server.username is None:
                username, credential = self.turn_credentials()
                server = server.model_copy(update={"username": username, "credential": credential})
            out.append(server)
        return out

    def for_page(self) -> dict:
        """What GET /ice answers: the browser's RTCConfiguration fields."""
        servers = [server.model_dump(exclude_none=True) for server in self.servers_now()]
        for server in servers:
            server["urls"] = list(server["urls"])
        return {"iceServers": servers, "iceTransportPolicy": self.policy,
                "credentialsExpire": int(self._clock()) + self.credential_ttl if self._secret else None}

    def for_peer(self) -> RTCConfiguration:
        """The configuration of one of the service's own peer connections (aiortc uses the first STUN and the
        first TURN URL it supports)."""
        servers = [RTCIceServer(urls=list(server.urls), username=server.username, credential=server.credential)
                   for server in self.servers_now()]
        policy = RTCIceTransportPolicy.RELAY if self.policy == "relay" else RTCIceTransportPolicy.ALL
        return RTCConfiguration(iceServers=servers, iceTransportPolicy=policy)
