"""Vhosts, users, permissions, policies and definitions over HTTP (RabbitMQ 3.13 shapes).

Writes need the ``administrator`` tag (policies: ``policymaker`` too), as in RabbitMQ. Users'
password hashes use rabbit_password_hashing_sha256 so ``password_hash`` values round-trip.
"""

from __future__ import annotations

from aiohttp import web

from broker.amqp.session import open_sessions
from broker.core import definitions_json, users
from broker.core.stats import Counters, session_totals
from broker.core.users import UnknownUser

from . import fmt
from .util import (
    USER_KEY,
    bad_request,
    body_json,
    details_of,
    list_reply,
    no_content,
    not_found,
    reply,
    require_admin,
    require_policymaker,
    server_of,
    vhost_of,
    visible_vhosts,
)

routes = web.RouteTableDef()


# ---- vhosts ------------------------------------------------------------------------------
def vhost_json(request: web.Request, name: str) -> dict:
    server = server_of(request)
    body = definitions_json.vhost_json(server, name)
    vhost = server.vhosts[name]
    ready = sum(q.message_count for q in vhost.queues.values())
    sessions = [s for s in open_sessions(server) if s.vhost is vhost]
    unacked = sum(len(c.unacked) for s in sessions for c in s.channels.values())
    counts = Counters.total([vhost.retired, *(session_totals(s) for s in sessions)])
    details = details_of(request)
    body.update({"cluster_state": {fmt.node_name(): "running"}, "tracing": False})
    details.fill(body, "vhost", name, "lengths", {
        "messages": ready + unacked, "messages_ready": ready,
        "messages_unacknowledged": unacked})
    details.fill(body, "vhost", name, "data", {"recv_oct": counts.recv_oct,
                                               "send_oct": counts.send_oct})
    body["message_stats"] = fmt.message_stats(counts, details, "vhost", name)
    return body


@routes.get("/api/vhosts")
async def list_vhosts(request: web.Request) -> web.Response:
    return list_reply(request, [vhost_json(request, v) for v in visible_vhosts(request)])


@routes.get("/api/vhosts/{vhost}")
async def show_vhost(request: web.Request) -> web.Response:
    return reply(vhost_json(request, vhost_of(request).name))


@routes.put("/api/vhosts/{vhost}")
async def put_vhost(request: web.Request) -> web.Response:
    require_admin(request)
    server = server_of(request)
    name = request.match_info["vhost"]
    body = await body_json(request)
    existed = name in server.vhosts
    tags = body.get("tags", [])
    tags = [t for t in tags.split(",") if t] if isinstance(tags, str) else list(tags)
    server.add_vhost(name, body.get("description", ""), tags,
                     body.get("default_queue_type", "classic"), acting_user=request[USER_KEY])
    if existed:
        server.update_vhost_meta(name, body.get("description"),
                                 tags if "tags" in body else None)
    return no_content() if existed else web.Response(status=201)


@routes.delete("/api/vhosts/{vhost}")
async def delete_vhost(request: web.Request) -> web.Response:
    require_admin(request)
    server = server_of(request)
    name = request.match_info["vhost"]
    if name not in server.vhosts:
        raise not_found()
    server.delete_vhost(name)
    return no_content()


# ---- users -------------------------------------------------------------------------------
@routes.get("/api/users")
async def list_users(request: web.Request) -> web.Response:
    require_admin(request)
    return list_reply(request, [u.as_json() for u in server_of(request).auth.users.values()])


@routes.get("/api/users/without-permissions")
async def users_without_permissions(request: web.Request) -> web.Response:
    require_admin(request)
    store = server_of(request).auth
    with_perms = {user for user, _ in store.permissions}
    return list_reply(request, [u.as_json() for u in store.users.values()
                                if u.name not in with_perms])


@routes.get("/api/users/{user}")
async def show_user(request: web.Request) -> web.Response:
    require_admin(request)
    user = server_of(request).auth.users.get(request.match_info["user"])
    if user is None:
        raise not_found()
    return reply(user.as_json())


@routes.put("/api/users/{user}")
async def put_user(request: web.Request) -> web.Response:
    require_admin(request)
    store = server_of(request).auth
    name = request.match_info["user"]
    body = await body_json(request)
    tags = body.get("tags", "")
    tags = [t.strip() for t in tags.split(",") if t.strip()] if isinstance(tags, str) \
        else [str(t) for t in tags]
    existed = name in store.users
    algorithm = body.get("hashing_algorithm") or users.HASHING_ALGORITHM
    if algorithm not in users.DIGESTS:
        raise bad_request(f"unknown hashing algorithm {algorithm}")
    if "password" in body:
        store.add_user(name, body["password"], tags, algorithm=algorithm)
    elif "password_hash" in body:
        store.add_user(name, tags=tags, password_hash=users.decode_hash(body["password_hash"]),
                       algorithm=algorithm)
    elif existed:
        store.set_tags(name, tags)
    else:
        raise bad_request("password or password_hash must be set")
    return no_content() if existed else web.Response(status=201)


@routes.delete("/api/users/{user}")
async def delete_user(request: web.Request) -> web.Response:
    require_admin(request)
    try:
        server_of(request).auth.delete_user(request.match_info["user"])
    except UnknownUser:
        raise not_found() from None
    return no_content()


@routes.post("/api/users/bulk-delete")
async def bulk_delete_users(request: web.Request) -> web.Response:
    require_admin(request)
    store = server_of(request).auth
    for name in (await body_json(request)).get("users", []):
        if name in store.users:
            store.delete_user(name)
    return no_content()


# ---- permissions -------------------------------------------------------------------------
def _perms(request: web.Request, user: str | None = None, vhost: str | None = None) -> list:
    return [p for p in definitions_json.permissions_json(server_of(request))
            if (user is None or p["user"] == user) and (vhost is None or p["vhost"] == vhost)]


@routes.get("/api/permissions")
async def list_permissions(request: web.Request) -> web.Response:
    require_admin(request)
    return list_reply(request, _perms(request))


@routes.get("/api/users/{user}/permissions")
async def user_permissions(request: web.Request) -> web.Response:
    require_admin(request)
    if request.match_info["user"] not in server_of(request).auth.users:
        raise not_found()
    return list_reply(request, _perms(request, user=request.match_info["user"]))


@routes.get("/api/vhosts/{vhost}/permissions")
async def vhost_permissions(request: web.Request) -> web.Response:
    require_admin(request)
    return list_reply(request, _perms(request, vhost=vhost_of(request).name))


@routes.get("/api/permissions/{vhost}/{user}")
async def show_permission(request: web.Request) -> web.Response:
    require_admin(request)
    found = _perms(request, request.match_info["user"], request.match_info["vhost"])
    if not found:
        raise not_found()
    return reply(found[0])


@routes.put("/api/permissions/{vhost}/{user}")
async def put_permission(request: web.Request) -> web.Response:
    require_admin(request)
    server = server_of(request)
    vhost, user = request.match_info["vhost"], request.match_info["user"]
    if vhost not in server.vhosts or user not in server.auth.users:
        raise bad_request("vhost_or_user_not_found")
    body = await body_json(request)
    existed = (user, vhost) in server.auth.permissions
    try:
        server.auth.set_permissions(user, vhost, *(str(body[k]) for k in users.PERMISSIONS))
    except KeyError as exc:
        raise bad_request(f"[{{key_missing,{exc.args[0]}}}]") from None
    return no_content() if existed else web.Response(status=201)


@routes.delete("/api/permissions/{vhost}/{user}")
async def delete_permission(request: web.Request) -> web.Response:
    require_admin(request)
    server = server_of(request)
    key = (request.match_info["user"], request.match_info["vhost"])
    if key not in server.auth.permissions:
        raise not_found()
    server.auth.clear_permissions(*key)
    return no_content()


@routes.get("/api/topic-permissions")
async def topic_permissions(request: web.Request) -> web.Response:
    require_admin(request)
    return list_reply(request, list(server_of(request).auth.topic_permissions))


# ---- policies ----------------------------------------------------------------------------
@routes.get("/api/policies")
@routes.get("/api/policies/{vhost}")
async def list_policies(request: web.Request) -> web.Response:
    server = server_of(request)
    names = [vhost_of(request).name] if "vhost" in request.match_info \
        else visible_vhosts(request)
    return list_reply(request, [p for name in names
                                for p in definitions_json.policies_json(server, name)])


@routes.get("/api/policies/{vhost}/{name}")
async def show_policy(request: web.Request) -> web.Response:
    vhost = vhost_of(request).name
    for policy in definitions_json.policies_json(server_of(request), vhost):
        if policy["name"] == request.match_info["name"]:
            return reply(policy)
    raise not_found()


APPLY_TO = ("all", "queues", "exchanges", "classic_queues", "quorum_queues", "streams")


@routes.put("/api/policies/{vhost}/{name}")
async def put_policy(request: web.Request) -> web.Response:
    require_policymaker(request)
    server = server_of(request)
    vhost, name = vhost_of(request).name, request.match_info["name"]
    body = await body_json(request)
    if "pattern" not in body or not isinstance(body.get("definition"), dict):
        raise bad_request("[{key_missing,pattern}]" if "pattern" not in body
                          else "[{key_missing,definition}]")
    apply_to = body.get("apply-to", "all")
    if apply_to not in APPLY_TO:
        raise bad_request(f"Validation failed\n\n'{apply_to}' is not a valid apply-to value")
    existed = name in server.policies.get(vhost, {})
    server.set_policy(vhost, name, {"pattern": str(body["pattern"]), "apply-to": apply_to,
                                    "priority": int(body.get("priority", 0)),
                                    "definition": body["definition"]})
    return no_content() if existed else web.Response(status=201)


@routes.delete("/api/policies/{vhost}/{name}")
async def delete_policy(request: web.Request) -> web.Response:
    require_policymaker(request)
    server = server_of(request)
    vhost, name = vhost_of(request).name, request.match_info["name"]
    if name not in server.policies.get(vhost, {}):
        raise not_found()
    server.clear_policy(vhost, name)
    return no_content()


@routes.get("/api/parameters")
@routes.get("/api/global-parameters")
async def empty_lists(request: web.Request) -> web.Response:
    return list_reply(request, [])


# ---- definitions -------------------------------------------------------------------------
@routes.get("/api/definitions")
@routes.get("/api/all-configuration")
async def get_definitions(request: web.Request) -> web.Response:
    require_admin(request)
    return _download(request, definitions_json.export_all(server_of(request)))


@routes.get("/api/definitions/{vhost}")
async def get_vhost_definitions(request: web.Request) -> web.Response:
    require_admin(request)
    return _download(request, definitions_json.export_vhost(server_of(request),
                                                       vhost_of(request).name))


def _download(request: web.Request, body: dict) -> web.Response:
    response = reply(body)
    if request.query.get("download"):
        response.headers["Content-Disposition"] = \
            f"attachment; filename={request.query['download']}"
    return response


@routes.post("/api/definitions")
@routes.post("/api/definitions/{vhost}")
async def post_definitions(request: web.Request) -> web.Response:
    require_admin(request)
    server = server_of(request)
    body = await body_json(request)
    try:
        if "vhost" in request.match_info:
            definitions_json.import_vhost(server, vhost_of(request).name, body)
        else:
            definitions_json.import_all(server, body)
    except definitions_json.DefinitionsError as exc:
        raise bad_request(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - AMQP rule violations in the document
        raise bad_request(getattr(exc, "text", str(exc))) from None
    return no_content()
