"""What administrators set over other people's use: vhost limits, user limits, operator
policies and topic permissions, in RabbitMQ 3.13's management API shapes. Administrator only.

Vhost limits are ``max-connections`` and ``max-queues``; user limits ``max-connections`` and
``max-channels``; a negative value means no limit, as in RabbitMQ (the broker enforces them
in ``session`` and ``vhost``). Operator policies apply to queues and are merged into the user
policy's definition (``broker.policies.merge_operator``). Topic permissions are stored and
listed here; their enforcement is not part of this module.
"""

from __future__ import annotations

from aiohttp import web

from broker.core import policies

from .util import (
    bad_request,
    body_fields,
    body_json,
    grant_target,
    grants_of,
    list_reply,
    no_content,
    not_found,
    reply,
    require_admin,
    server_of,
    user_of,
    vhost_of,
    visible_vhosts,
)

routes = web.RouteTableDef()
VHOST_LIMITS = ("max-connections", "max-queues")
USER_LIMITS = ("max-connections", "max-channels")


async def _limit_value(request: web.Request) -> int:
    value = (await body_json(request)).get("value")
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request("Validation failed\n\nvalue must be an integer\n")
    return value


def _check_name(name: str, allowed: tuple[str, ...]) -> None:
    if name not in allowed:
        raise bad_request(f'Validation failed\n\n[<<"{name}">>] are not recognised limit '
                          "settings\n")


# ---- vhost limits ------------------------------------------------------------------------
@routes.get("/api/vhost-limits")
@routes.get("/api/vhost-limits/{vhost}")
async def list_vhost_limits(request: web.Request) -> web.Response:
    require_admin(request)
    server = server_of(request)
    names = [vhost_of(request).name] if "vhost" in request.match_info \
        else visible_vhosts(request)
    return reply([{"vhost": n, "value": dict(server.vhosts[n].limits)} for n in names
                  if server.vhosts[n].limits])


@routes.put("/api/vhost-limits/{vhost}/{name}")
async def set_vhost_limit(request: web.Request) -> web.Response:
    require_admin(request)
    vhost = vhost_of(request)
    name = request.match_info["name"]
    _check_name(name, VHOST_LIMITS)
    vhost.limits[name] = await _limit_value(request)
    server_of(request).invalidate()
    return no_content()


@routes.delete("/api/vhost-limits/{vhost}/{name}")
async def clear_vhost_limit(request: web.Request) -> web.Response:
    require_admin(request)
    vhost = vhost_of(request)
    if vhost.limits.pop(request.match_info["name"], None) is None:
        raise not_found()
    server_of(request).invalidate()
    return no_content()


# ---- user limits -------------------------------------------------------------------------
@routes.get("/api/user-limits")
@routes.get("/api/user-limits/{user}")
async def list_user_limits(request: web.Request) -> web.Response:
    require_admin(request)
    users = server_of(request).auth.users
    if "user" in request.match_info:
        if request.match_info["user"] not in users:
            raise not_found()
        chosen = [users[request.match_info["user"]]]
    else:
        chosen = list(users.values())
    return reply([{"user": u.name, "value": dict(u.limits)} for u in chosen if u.limits])


@routes.put("/api/user-limits/{user}/{name}")
async def set_user_limit(request: web.Request) -> web.Response:
    require_admin(request)
    server = server_of(request)
    user = server.auth.users.get(request.match_info["user"])
    if user is None:
        raise not_found()
    name = request.match_info["name"]
    _check_name(name, USER_LIMITS)
    user.limits[name] = await _limit_value(request)
    server.invalidate()
    return no_content()


@routes.delete("/api/user-limits/{user}/{name}")
async def clear_user_limit(request: web.Request) -> web.Response:
    require_admin(request)
    server = server_of(request)
    user = server.auth.users.get(request.match_info["user"])
    if user is None or user.limits.pop(request.match_info["name"], None) is None:
        raise not_found()
    server.invalidate()
    return no_content()


# ---- operator policies -------------------------------------------------------------------
def _operator_json(server: object, vhost: str) -> list[dict]:
    found = server.vhosts[vhost].operator_policies  # type: ignore[attr-defined]
    return [{"vhost": vhost, "name": name, "pattern": p["pattern"],
             "apply-to": p["apply-to"], "definition": p["definition"],
             "priority": p["priority"]} for name, p in sorted(found.items())]


@routes.get("/api/operator-policies")
@routes.get("/api/operator-policies/{vhost}")
async def list_operator_policies(request: web.Request) -> web.Response:
    server = server_of(request)
    names = [vhost_of(request).name] if "vhost" in request.match_info \
        else visible_vhosts(request)
    return list_reply(request, [p for n in names for p in _operator_json(server, n)])


@routes.get("/api/operator-policies/{vhost}/{name}")
async def show_operator_policy(request: web.Request) -> web.Response:
    vhost = vhost_of(request).name
    for policy in _operator_json(server_of(request), vhost):
        if policy["name"] == request.match_info["name"]:
            return reply(policy)
    raise not_found()


@routes.put("/api/operator-policies/{vhost}/{name}")
async def put_operator_policy(request: web.Request) -> web.Response:
    require_admin(request)
    vhost = vhost_of(request)
    body = await body_json(request)
    if "pattern" not in body or not isinstance(body.get("definition"), dict):
        raise bad_request("[{key_missing,pattern}]" if "pattern" not in body
                          else "[{key_missing,definition}]")
    apply_to = body.get("apply-to", "queues")
    if apply_to not in policies.OPERATOR_APPLY_TO:
        raise bad_request(f"Validation failed\n\n'{apply_to}' is not a valid apply-to value")
    refused = policies.validate_operator(body["definition"])
    if refused:
        raise bad_request(refused)
    name = request.match_info["name"]
    existed = name in vhost.operator_policies
    vhost.set_operator_policy(name, str(body["pattern"]), body["definition"],
                              int(body.get("priority", 0)), apply_to)
    return no_content() if existed else web.Response(status=201)


@routes.delete("/api/operator-policies/{vhost}/{name}")
async def delete_operator_policy(request: web.Request) -> web.Response:
    require_admin(request)
    vhost = vhost_of(request)
    if request.match_info["name"] not in vhost.operator_policies:
        raise not_found()
    vhost.clear_operator_policy(request.match_info["name"])
    return no_content()


# ---- topic permissions -------------------------------------------------------------------
def _topics(request: web.Request, user: str | None = None,
            vhost: str | None = None) -> list[dict]:
    return grants_of(server_of(request).auth.topic_permissions, user, vhost)


@routes.get("/api/topic-permissions/{vhost}/{user}")
async def show_topic_permissions(request: web.Request) -> web.Response:
    require_admin(request)
    found = _topics(request, request.match_info["user"], vhost_of(request).name)
    if not found:
        raise not_found()
    return reply(found)


@routes.get("/api/users/{user}/topic-permissions")
async def user_topic_permissions(request: web.Request) -> web.Response:
    require_admin(request)
    return list_reply(request, _topics(request, user=user_of(request)))


@routes.get("/api/vhosts/{vhost}/topic-permissions")
async def vhost_topic_permissions(request: web.Request) -> web.Response:
    require_admin(request)
    return list_reply(request, _topics(request, vhost=vhost_of(request).name))


@routes.put("/api/topic-permissions/{vhost}/{user}")
async def put_topic_permission(request: web.Request) -> web.Response:
    require_admin(request)
    vhost, user = grant_target(request)
    body = await body_fields(request)
    body.missing("exchange", "write", "read")
    exchange, write, read = body.text("exchange"), body.regex("write"), body.regex("read")
    existed = bool(_topics(request, user, vhost))
    server_of(request).auth.set_topic_permission(user, vhost, exchange, write, read)
    return no_content() if existed else web.Response(status=201)


@routes.delete("/api/topic-permissions/{vhost}/{user}")
@routes.delete("/api/topic-permissions/{vhost}/{user}/{exchange}")
async def delete_topic_permission(request: web.Request) -> web.Response:
    require_admin(request)
    server = server_of(request)
    removed = server.auth.clear_topic_permissions(
        request.match_info["user"], request.match_info["vhost"],
        request.match_info.get("exchange") or request.query.get("exchange") or None)
    if not removed:
        raise not_found()
    return no_content()
