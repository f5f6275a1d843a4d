"""The management API's Authorization header, read as RabbitMQ 3.10.8's listener (Cowboy's
parse_authorization) reads it, each answer measured on a local RabbitMQ 3.10.8: a header that
does not parse - base64 that does not decode, a pair with no ``:``, an unknown scheme, a
malformed bearer token or digest list - is a bare 400 (no body, no content type); no header or
a well-formed Digest one is a bare 401 with the Basic challenge; a bearer token, and a Basic
pair that parses, are checked as a login (a refused one is the JSON 401)."""

from __future__ import annotations

import base64
import http.client
import json

import pytest


def b64(text: bytes) -> str:
    return base64.b64encode(text).decode()


def call(port: int, authorization: str | None, path: str = "/api/whoami",
         method: str = "GET") -> tuple[int, bytes, http.client.HTTPResponse]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {} if authorization is None else {"Authorization": authorization}
    conn.request(method, path, headers=headers)
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, body, resp


REFUSED = {"error": "not_authorized", "reason": "Not_Authorized"}


@pytest.mark.parametrize("header", [
    "Basic !!!notbase64",
    "Basic " + b64(b"guestguest"),           # decodes, but no ':'
    "Basic",                                 # no space, no value
    "Basic ",                                # empty pair: no ':'
    "Basic Z3Vlc3Q6Z3Vlc3Q",                 # guest:guest without its '=' padding
    "Basic Z3Vlc3Q6Z3Vlc3Q= extra",          # text after the padding
    "Basic\tZ3Vlc3Q6Z3Vlc3Q=",               # the scheme takes exactly one space
    "Digest foo",                            # not a list of auth-params
    "Foo bar", "Negotiate abc",              # schemes Cowboy does not know
    "Bearer", "Bearer a b",                  # no token / not a token68
])
def test_malformed_header_is_a_bare_400(burrowmq, header: str) -> None:  # type: ignore
    status, body, resp = call(burrowmq.management_port, header)
    assert (status, body) == (400, b""), header
    assert resp.getheader("Content-Type") is None
    assert resp.getheader("WWW-Authenticate") is None


@pytest.mark.parametrize("header", [None, 'Digest username="guest"'])
def test_no_credentials_is_a_bare_401_with_the_challenge(burrowmq, header) -> None:  # type: ignore
    status, body, resp = call(burrowmq.management_port, header, "/api/overview")
    assert (status, body) == (401, b"")
    assert resp.getheader("WWW-Authenticate") == 'Basic realm="RabbitMQ Management"'
    assert resp.getheader("Content-Type") is None


@pytest.mark.parametrize("header", [
    "Bearer abc",
    "bearer abc.def~+/==",
    "Basic " + b64(b"guest:wrong"),
    "Basic " + b64(b":"),                    # empty user and password: parses, refused
    "Basic " + b64(b"guest:gu:est"),         # the password is everything after the first ':'
    "Basic " + b64(b"gu\xffest:x"),          # not UTF-8: no such user
])
def test_parsed_credentials_are_a_login(burrowmq, header: str) -> None:  # type: ignore
    status, body, _resp = call(burrowmq.management_port, header)
    assert (status, json.loads(body)) == (401, REFUSED), header


@pytest.mark.parametrize("header", [
    "Basic " + b64(b"guest:guest"),
    "basic " + b64(b"guest:guest"),          # the scheme ignores case
    "BASIC " + b64(b"guest:guest"),
    "Basic  " + b64(b"guest:guest"),         # base64 skips spaces, inside too
    "Basic Z3Vlc3Q6 Z3Vlc3Q=",
])
def test_good_basic_variants_log_in(burrowmq, header: str) -> None:  # type: ignore
    status, body, _resp = call(burrowmq.management_port, header)
    assert status == 200, header
    assert json.loads(body)["name"] == "guest"
