"""Request plumbing shared by the management handlers: authentication and tags, RabbitMQ's
error bodies, vhost / object lookup, and the list options (columns, sort, pagination).

Error bodies are RabbitMQ's: ``{"error": <type>, "reason": <text>}`` with 400 ``bad_request``,
401 ``not_authorised`` / ``not_authorized`` (sic, both spellings occur), 404
``Object Not Found``.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any  # Any: JSON values, aiohttp keys

from aiohttp import web

from broker.core.validation import Fields

if TYPE_CHECKING:
    from broker.core.server import Server
    from broker.core.vhost import VirtualHost
    from broker.node.node import Node

    from .sampler import Details

MANAGEMENT_TAGS = {"administrator", "monitoring", "policymaker", "management"}
# AppKey's second argument is only a label at run time; Server and Node are imported for type
# checking only, so the keys are typed by annotation.
SERVER_KEY: web.AppKey[Server] = web.AppKey("server", object)  # type: ignore[arg-type]
NODE_KEY: web.AppKey[Node] = web.AppKey("node", object)  # type: ignore[arg-type]
SAMPLER_KEY: web.AppKey[Any] = web.AppKey("sampler", object)
CONTROL_KEY: web.AppKey[str] = web.AppKey("control_cookie", str)  # the CLI's socket app only
USER_KEY: Any = web.RequestKey("user", str) if hasattr(web, "RequestKey") else "user"
# tags of a user authenticated elsewhere (a cluster peer, or the leader for a follower)
TAGS_KEY: Any = web.RequestKey("tags", set) if hasattr(web, "RequestKey") else "tags"


def dumps(value: Any) -> str:
    return json.dumps(value, default=_default, separators=(",", ":"))


def _default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return value.decode("utf-8", "replace")
    if hasattr(value, "isoformat"):
        return int(value.timestamp())
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


class ColumnsDone(web.Response):
    """A response whose ``columns`` were applied already (lists, answers relayed from another
    node): ``pick_columns`` leaves it alone."""


def reply(value: Any, status: int = 200) -> web.Response:
    return web.Response(text=dumps(value), status=status, content_type="application/json")


def pick_columns(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """``?columns=a,b.c`` on a single object's GET (``/api/overview``, one queue ...): RabbitMQ
    trims those answers as it trims lists (``list_reply`` does lists)."""
    columns = [c for c in request.query.get("columns", "").split(",") if c]
    if not columns or request.method != "GET" or isinstance(response, ColumnsDone) \
            or not isinstance(response, web.Response) or response.status != 200 \
            or response.content_type != "application/json" or response.body is None:
        return response
    value = json.loads(bytes(response.body))  # type: ignore[arg-type]
    if not isinstance(value, dict):
        return response
    return reply(_pick(value, columns))


def error(status: int, kind: str, reason: str | list[Any]) -> web.HTTPException:
    cls = {400: web.HTTPBadRequest, 401: web.HTTPUnauthorized, 404: web.HTTPNotFound,
           405: web.HTTPMethodNotAllowed, 503: web.HTTPServiceUnavailable}.get(status)
    body = dumps({"error": kind, "reason": reason})
    if cls is web.HTTPMethodNotAllowed:
        return web.HTTPMethodNotAllowed("", [], text=body, content_type="application/json")
    return (cls or web.HTTPInternalServerError)(text=body, content_type="application/json")


def bad_request(reason: str | list[Any]) -> web.HTTPException:
    """RabbitMQ's 400; a list reason is its Erlang-tuple shape (``["not_boolean", v]``)."""
    return error(400, "bad_request", reason)


def not_found() -> web.HTTPException:
    return error(404, "Object Not Found", "Not Found")


def no_content() -> web.Response:
    return web.Response(status=204)


def server_of(request: web.Request) -> Server:
    """The state: vhosts, users, connections (the node's current one: a cluster node starts
    from a blank state each time it takes the lead)."""
    return request.app[NODE_KEY].server


def node_of(request: web.Request) -> Node:
    """The running node: listeners and ports, settings, alarms, start / stop."""
    return request.app[NODE_KEY]


def details_of(request: web.Request) -> Details:
    """Rates and samples for this answer, for the ranges its query string asks for."""
    return request.app[SAMPLER_KEY].details(request.query)


# ---- authentication --------------------------------------------------------------------
REALM = 'Basic realm="RabbitMQ Management"'
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_PARAM = rf"{_TOKEN}[ \t]*=[ \t]*(?:{_TOKEN}|\"(?:[^\"\\]|\\.)*\")"
_DIGEST = re.compile(rf"{_PARAM}(?:[ \t]*,[ \t]*{_PARAM})*")
_B64_SPACE = str.maketrans("", "", " \t\r\n")


def credentials(request: web.Request) -> tuple[str, str] | str | None:
    """The Authorization header as RabbitMQ's management listener (Cowboy's
    ``parse_authorization``) reads it: ``(user, password)`` for ``Basic``, the token (a str)
    for ``Bearer`` (and for a pair that is not UTF-8), None when there is no header or a
    well-formed ``Digest`` one. Anything else is RabbitMQ 3.10.8's bare 400 (no body, no
    content type), raised here: a scheme it does not know, base64 that does not decode
    (strict padding; spaces are skipped), no ``:`` in the decoded pair, a malformed token or
    digest list. Schemes ignore case and take exactly one space after them."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, value = header[:7].lower(), header[7:]
    if scheme[:6] == "basic ":
        try:
            pair = base64.b64decode(header[6:].translate(_B64_SPACE), validate=True)
        except (binascii.Error, ValueError):
            raise bare(400) from None
        user, colon, password = pair.partition(b":")
        if not colon:
            raise bare(400)
        try:
            return user.decode(), password.decode()
        except UnicodeDecodeError:  # no user has that name: a refused login (401), as a token
            return ""
    if scheme == "bearer " and _TOKEN68.fullmatch(value):
        return value
    if scheme == "digest " and _DIGEST.fullmatch(value):
        return None
    raise bare(400)


def bare(status: int) -> web.HTTPException:
    """A response with no body and no content type, as Cowboy sends its own 400s and
    401s (the latter with the Basic challenge)."""
    cls = web.HTTPBadRequest if status == 400 else web.HTTPUnauthorized
    exc = cls(headers={"WWW-Authenticate": REALM} if status == 401 else None)
    exc.body = None
    exc.headers.pop("Content-Type", None)
    return exc


def authenticate(request: web.Request) -> str:
    """The authenticated management user's name, or RabbitMQ's answers: no credentials is a
    bare 401 with the Basic challenge; refused ones (a bearer token too: there is no OAuth
    here, RabbitMQ refuses it as a password) a JSON 401; a malformed header a bare 400."""
    server = server_of(request)
    creds = credentials(request)
    if creds is None:
        raise bare(401)
    if isinstance(creds, str) or not server.auth.authenticate(*creds):
        raise error(401, "not_authorized", "Not_Authorized")
    user = server.auth.users[creds[0]]
    host = request.remote or ""
    if not server.auth.login_allowed_from(user.name, host):
        raise error(401, "not_authorised", "User can only log in via localhost")
    if not MANAGEMENT_TAGS.intersection(user.tags):
        raise error(401, "not_authorised", "Not management user")
    return user.name


def tags_of(request: web.Request) -> set[str]:
    if CONTROL_KEY in request.app:  # the CLI over the control socket: the node's operator
        return {"administrator"}
    if TAGS_KEY in request:
        return set(request[TAGS_KEY])
    return set(server_of(request).auth.users[request[USER_KEY]].tags)


def require_admin(request: web.Request) -> None:
    if "administrator" not in tags_of(request):
        raise error(401, "not_authorised", "Not administrator user")


def require_policymaker(request: web.Request) -> None:
    if not {"administrator", "policymaker"} & tags_of(request):
        raise error(401, "not_authorised", "User not authorised to access object")


def is_monitor(request: web.Request) -> bool:
    return bool({"administrator", "monitoring"} & tags_of(request))


def visible_vhosts(request: web.Request) -> list[str]:
    server = server_of(request)
    if is_monitor(request):
        return list(server.vhosts)
    return [v for v in server.vhosts if server.auth.may_access(request[USER_KEY], v)]


def vhost_of(request: web.Request, key: str = "vhost") -> VirtualHost:
    name = request.match_info[key]
    vhost = server_of(request).vhosts.get(name)
    if vhost is None or name not in visible_vhosts(request):
        raise not_found()
    return vhost


def user_of(request: web.Request) -> str:
    """The ``{user}`` of the path; 404 when there is no such user."""
    name = request.match_info["user"]
    if name not in server_of(request).auth.users:
        raise not_found()
    return name


def grant_target(request: web.Request) -> tuple[str, str]:
    """The ``{vhost}`` and ``{user}`` a permission is set for; 400 unless both exist."""
    server = server_of(request)
    vhost, user = request.match_info["vhost"], request.match_info["user"]
    if vhost not in server.vhosts or user not in server.auth.users:
        raise bad_request("vhost_or_user_not_found")
    return vhost, user


def grants_of(rows: Iterable[Mapping[str, Any]], user: str | None = None,
              vhost: str | None = None) -> list[dict[str, Any]]:
    """Copies of the permission rows (keys ``user`` and ``vhost``) of ``user`` and on
    ``vhost`` (None: any)."""
    return [dict(p) for p in rows
            if (user is None or p.get("user") == user)
            and (vhost is None or p.get("vhost") == vhost)]


def vhosts_in_scope(request: web.Request) -> list[VirtualHost]:
    """``/api/x/{vhost}`` -> that vhost; ``/api/x`` -> every vhost the user may see."""
    if "vhost" in request.match_info:
        return [vhost_of(request)]
    server = server_of(request)
    return [server.vhosts[v] for v in visible_vhosts(request)]


async def body_json(request: web.Request) -> dict:
    """The request's JSON object, as rabbit_mgmt_util:decode reads it: an empty body, ``null``
    or ``undefined`` is {}; a JSON string is the doubly-encoded error; anything else that is
    not an object is ``not_json``."""
    if not request.can_read_body:
        return {}
    raw = await request.read()
    text = raw.strip()
    if text in (b"", b"null", b"undefined"):
        return {}
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise bad_request("not_json") from None
    if isinstance(data, str):
        raise bad_request("invalid payload: the request body JSON-decoded to a string. Is the "
                          "input doubly-JSON-encoded?")
    if not isinstance(data, dict):
        raise bad_request("not_json")
    return data


async def body_fields(request: web.Request) -> Fields:
    """The body as typed fields: a wrong type becomes a 400 (``InvalidInput`` is turned into
    one by the middleware)."""
    return Fields(await body_json(request))


def query_bool(request: web.Request, key: str) -> bool:
    """``?if-unused=true``: only ``true`` means yes, as in RabbitMQ."""
    return request.query.get(key) == "true"


# ---- list options ----------------------------------------------------------------------
def _pick(item: dict, columns: list[str]) -> dict:
    out: dict = {}
    for column in columns:
        head, _, rest = column.partition(".")
        if head not in item:
            continue
        if rest and isinstance(item[head], dict):
            out.setdefault(head, {}).update(_pick(item[head], [rest]))
        else:
            out[head] = item[head]
    return out


def list_reply(request: web.Request, items: list[dict]) -> web.Response:
    """Apply ?name=&use_regex, ?sort=&sort_reverse=, ?columns= and ?page=&page_size=.

    As RabbitMQ: the name filter ignores case (a substring, or a regex with use_regex=true; a
    regex that does not compile matches nothing); ``sort`` may name a nested field
    (``message_stats.publish_details.rate``)."""
    q = request.query
    total = len(items)
    if q.get("name"):
        needle = q["name"]
        if q.get("use_regex") == "true":
            try:
                pattern = re.compile(needle, re.IGNORECASE)
            except re.error:
                items = []
            else:
                items = [i for i in items if pattern.search(str(i.get("name", "")))]
        else:
            lowered = needle.lower()
            items = [i for i in items if lowered in str(i.get("name", "")).lower()]
    if q.get("sort"):
        path = q["sort"].split(".")
        items = sorted(items, key=lambda i: _sort_key(_dig(i, path)),
                       reverse=q.get("sort_reverse") == "true")
    if q.get("columns"):
        columns = [c for c in q["columns"].split(",") if c]
        items = [_pick(i, columns) for i in items]
    return ColumnsDone(text=dumps(items if "page" not in q else _page(items, total, q)),
                       content_type="application/json")


def _dig(item: Any, path: list[str]) -> Any:
    for key in path:
        if not isinstance(item, dict):
            return None
        item = item.get(key)
    return item


def _sort_key(value: Any) -> tuple:
    if value is None:
        return (0, 0)
    if isinstance(value, bool):
        return (1, int(value))
    return (1, value) if isinstance(value, int | float) else (2, str(value).lower())


def _page(items: list[dict], total: int, q: Any) -> dict:
    try:
        page, size = int(q.get("page", 1)), int(q.get("page_size", 100))
    except ValueError:
        raise bad_request("Pagination parameters are invalid") from None
    if page < 1 or size < 1 or size > 500:
        raise error(400, "invalid_pagination_parameters", f"Invalid pagination parameters: "
                    f"page number {page}, page size {size}")
    chunk = items[(page - 1) * size: page * size]
    return {"filtered_count": len(items), "item_count": len(chunk), "items": chunk,
            "page": page, "page_count": max(1, math.ceil(len(items) / size)),
            "page_size": size, "total_count": total}
