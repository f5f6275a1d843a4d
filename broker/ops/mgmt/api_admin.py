"""Vhosts, users, permissions, policies and definitions over HTTP (RabbitMQ 3.13 shapes).

Writes need the ``administrator`` tag (policies: ``policymaker`` too), as in RabbitMQ. Users'
password hashes use rabbit_password_hashing_sha256 so ``password_hash`` values round-trip.
"""

from __future__ import annotations

from aiohttp import web

from broker.amqp.session import open_sessions
from broker.core import definitions_json, users, validation
from broker.core.stats import Counters, session_totals
from broker.core.users import UnknownUser

from . import fmt
from .util import (
    USER_KEY,
    bad_request,
    body_fields,
    body_json,
    details_of,
    grant_target,
    grants_of,
    list_reply,
    no_content,
    not_found,
    reply,
    require_admin,
    require_policymaker,
    server_of,
    user_of,
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
    body = await body_fields(request)
    existed = name in server.vhosts
    tags = body.tags()
    description = body.text("description", "")
    server.add_vhost(name, description, tags, body.text("default_queue_type", "classic"),
                     acting_user=request[USER_KEY])
    if existed:
        server.update_vhost_meta(name, description if body.has("description") else None,
                                 tags if body.has("tags") else None)
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
    body = await body_fields(request)
    tags = body.tags()
    existed = name in store.users
    algorithm = body.text("hashing_algorithm", "") or users.HASHING_ALGORITHM
    if algorithm not in users.DIGESTS:
        raise bad_request(f"unknown hashing algorithm {algorithm}")
    if body.has("password"):
        store.add_user(name, body.text("password"), tags, algorithm=algorithm)
    elif body.has("password_hash"):
        try:
            digest = users.decode_hash(body.text("password_hash"))
        except ValueError:
            raise bad_request("password_hash is not base64") from None
        store.add_user(name, tags=tags, password_hash=digest, algorithm=algorithm)
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
    names = (await body_fields(request)).data.get("users") or []
    if not isinstance(names, list):
        raise bad_request("users should be a list of user names")
    for name in names:
        if isinstance(name, str) and name in store.users:
            store.delete_user(name)
    return no_content()


# ---- permissions -------------------------------------------------------------------------
def _perms(request: web.Request, user: str | None = None, vhost: str | None = None) -> list:
    return grants_of(definitions_json.permissions_json(server_of(request)), user, vhost)


@routes.get("/api/permissions")
async def list_permissions(request: web.Request) -> web.Response:
    require_admin(request)
    return list_reply(request, _perms(request))


@routes.get("/api/users/{user}/permissions")
async def user_permissions(request: web.Request) -> web.Response:
    require_admin(request)
    return list_reply(request, _perms(request, user=user_of(request)))


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
    vhost, user = grant_target(request)
    auth = server_of(request).auth
    body = await body_fields(request)
    existed = (user, vhost) in auth.permissions
    body.missing(*users.PERMISSIONS)
    auth.set_permissions(user, vhost, *(body.regex(k) for k in users.PERMISSIONS))
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


# ---- topic permissions: listed here, the rest in limits.py (rabbit_mgmt_wm_topic_permission*)
@routes.get("/api/topic-permissions")
async def topic_permissions(request: web.Request) -> web.Response:
    require_admin(request)
    return list_reply(request, server_of(request).auth.topic_permissions)


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




@routes.put("/api/policies/{vhost}/{name}")
async def put_policy(request: web.Request) -> web.Response:
    require_policymaker(request)
    server = server_of(request)
    vhost, name = vhost_of(request).name, request.match_info["name"]
    body = await body_fields(request)
    pattern, definition, priority, apply_to = validation.check_policy(body)
    existed = name in server.policies.get(vhost, {})
    server.set_policy(vhost, name, {"pattern": pattern, "apply-to": apply_to,
                                    "priority": priority, "definition": definition})
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
    return no_content()
