"""Web UI, Admin tab in Chromium: add a user with tags and a password, give it a permission
and a topic permission, log in as that user; add a vhost and find it in the vhost selector;
apply a policy and see its badge on the queue, then an operator policy; set limits and see a
client refused by them; read the cluster's nodes; delete what was made."""

from __future__ import annotations

import re

import pika.exceptions
import pytest
from ops_helpers import amqp_url, connect
from playwright.sync_api import expect
from ui_helpers import Ui, ui, ui_browser  # noqa: F401

from broker.core.naming import node_name


def test_users_and_permissions(ui, ui_browser) -> None:  # type: ignore  # noqa: F811
    page = ui.page
    ui.goto("users")
    expect(page.locator("#users")).to_contain_text("guest")
    add = page.locator("#add-user")
    add.get_by_label("Username").fill("ui-operator")
    add.get_by_label("Password", exact=True).fill("s3cret")
    add.get_by_label("Password (confirm)").fill("s3cret")
    add.get_by_role("button", name="Monitoring").click()
    add.get_by_role("button", name="Add user").click()
    expect(ui.flash()).to_contain_text("User ui-operator added.")
    row = page.locator("#users tr", has=page.get_by_role("link", name="ui-operator"))
    expect(row).to_contain_text("monitoring")
    expect(row).to_contain_text("No access")
    ui.shot("users")

    row.get_by_role("link", name="ui-operator").click()
    expect(page.get_by_role("heading", name="User ui-operator")).to_be_visible()
    perm = page.locator("#set-permission")
    perm.get_by_label("Configure regexp").fill("^ui-")
    perm.get_by_role("button", name="Set permission").click()
    expect(ui.flash()).to_contain_text("Permission set for ui-operator in /.")
    perms = ui.section("Permissions")
    expect(perms.get_by_role("row", name="/ ^ui- .* .* Clear", exact=True)).to_be_visible()
    topic = page.locator("#set-topic-permission")
    topic.get_by_label("Write regexp").fill("^orders\\.")
    topic.get_by_role("button", name="Set topic permission").click()
    expect(ui.section("Topic permissions").get_by_role(
        "row", name=re.compile(r"amq\.topic \^orders"))).to_be_visible()
    ui.shot("user")
    assert ui.api.get("/api/permissions/%2F/ui-operator")["configure"] == "^ui-"

    # The new user logs in (a monitoring user sees no Admin tab) and reaches AMQP.
    other = Ui(ui_browser, ui.handle)
    other.goto("login/ui-operator/s3cret")
    expect(other.page.locator("#who")).to_have_text("ui-operator")
    expect(other.page.locator("#admin-tab")).to_be_hidden()
    other.close()
    connect(amqp_url(ui.handle, "ui-operator", "s3cret")).close()

    update = page.locator("#update-user")
    update.get_by_label("Password").fill("changed")
    update.get_by_role("button", name="Update user").click()
    expect(ui.flash()).to_contain_text("User ui-operator updated.")
    connect(amqp_url(ui.handle, "ui-operator", "changed")).close()
    perms.get_by_role("button", name="Clear").click()
    expect(perms).to_contain_text("no permissions")
    page.locator("#delete-user").get_by_role("button", name="Delete this user").click()
    expect(page.get_by_role("heading", name="Users")).to_be_visible()
    expect(page.locator("#users")).not_to_contain_text("ui-operator")


def test_vhosts(ui) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    page = ui.page
    ui.goto("vhosts")
    add = page.locator("#add-vhost")
    add.get_by_label("Name").fill("ui-staging")
    add.get_by_label("Description").fill("where releases wait")
    add.get_by_role("button", name="Add virtual host").click()
    expect(ui.flash()).to_contain_text("Virtual host ui-staging added.")
    expect(page.locator("#vhosts")).to_contain_text("where releases wait")
    ui.shot("vhosts")
    # The vhost selector offers it; choosing it narrows the queues list.
    ui.api.put("/api/queues/ui-staging/staged", {"durable": True})
    ui.api.put("/api/queues/%2F/elsewhere", {"durable": True})
    expect(page.locator("#vhost option", has_text="ui-staging")).to_have_count(1)
    page.get_by_label("Virtual host", exact=True).first.select_option("ui-staging")
    ui.goto("queues")
    expect(page.locator("#queues")).to_contain_text("staged")
    expect(page.locator("#queues")).not_to_contain_text("elsewhere")
    page.locator("#vhost").select_option("")

    ui.goto("vhosts/ui-staging")
    expect(page.get_by_role("heading", name="Virtual Host ui-staging")).to_be_visible()
    expect(ui.section("Permissions")).to_contain_text("guest")  # its creator
    ui.shot("vhost")
    page.locator("#delete-vhost").get_by_role("button", name="Delete this virtual host").click()
    expect(page.get_by_role("heading", name="Virtual Hosts")).to_be_visible()
    expect(page.locator("#vhosts")).not_to_contain_text("ui-staging")
    assert ui.api.request("GET", "/api/vhosts/ui-staging")[0] == 404


def test_policies(ui) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    ui.api.put("/api/queues/%2F/capped-orders", {"durable": True})
    page = ui.page
    ui.goto("policies")
    add = page.locator("#add-policy")
    add.get_by_label("Name").fill("ui-cap")
    add.get_by_label("Pattern").fill("^capped-")
    add.get_by_label("Apply to").select_option("queues")
    add.get_by_role("button", name="Max length", exact=True).click()
    add.locator("input[name=definition-value]").first.fill("2")
    add.get_by_role("button", name="Add / update policy").click()
    expect(ui.flash()).to_contain_text("Policy ui-cap set.")
    expect(ui.section("User policies")).to_contain_text("^capped-")

    op = page.locator("#add-operator-policy")
    op.get_by_label("Name").fill("ui-op")
    op.get_by_label("Pattern").fill("^capped-")
    op.get_by_role("button", name="Message TTL", exact=True).click()
    op.locator("input[name=definition-value]").first.fill("60000")
    op.get_by_role("button", name="Add / update policy").click()
    expect(ui.section("Operator policies")).to_contain_text("ui-op")
    ui.shot("policies")

    ui.goto("queues")
    row = page.locator("#queues tr", has=page.get_by_role("link", name="capped-orders"))
    expect(row.get_by_title("Policy: ui-cap")).to_have_text("ui-cap")
    expect(row.get_by_title("Operator policy: ui-op")).to_have_text("ui-op")
    conn = connect(ui.handle.url)
    ch = conn.channel()
    for i in range(4):
        ch.basic_publish("", "capped-orders", str(i).encode())
    assert ch.queue_declare("capped-orders", passive=True).method.message_count == 2
    conn.close()

    ui.goto("policies/%2F/ui-cap")
    expect(page.get_by_role("heading", name="Policy ui-cap")).to_be_visible()
    page.locator("#delete-policy").get_by_role("button", name="Delete this policy").click()
    expect(ui.section("User policies")).to_contain_text("no policies")


def test_limits_and_cluster(ui) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    page = ui.page
    ui.goto("limits")
    form = page.locator("#set-vhost-limit")
    form.get_by_label("Limit").select_option("max-connections")
    form.get_by_label("Value").fill("0")
    form.get_by_role("button", name="Set / update limit").click()
    expect(ui.flash()).to_contain_text("Limit set.")
    vhost_limits = ui.section("Virtual host limits")
    expect(vhost_limits.get_by_role("row", name="/ max-connections 0 Clear",
                                     exact=True)).to_be_visible()
    ui.shot("limits")
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError):
        connect(ui.handle.url)
    vhost_limits.get_by_role("button", name="Clear").click()
    expect(vhost_limits).to_contain_text("no vhost limits")
    connect(ui.handle.url).close()

    ui.goto("cluster")
    expect(ui.section("Nodes")).to_contain_text(node_name())
    rename = page.locator("#cluster-name-form")
    rename.get_by_label("New name").fill("ui-cluster")
    rename.get_by_role("button", name="Change name").click()
    expect(ui.section("Cluster name")).to_contain_text("ui-cluster")
    ui.shot("cluster")
