"""Several nodes (issue 19): two gunicorn servers, two Celery workers and one beat, real processes
sharing one PostgreSQL database and one Redis, driven through both servers while parts of them die.

One scenario, in three acts, because starting the five processes is most of its cost:

1. Kills. Agents ask for access through the API of both servers; Slack approvals (two approvers
   each, payloads signed as Slack signs them, some of them replayed to the other server as Slack
   retries) reach both servers while a client asks for decisions from both. Mid-load one server
   and one worker are SIGKILLed and started again. A click that fails is clicked again by its
   person, at the other server (Slack shows an error; the load balancer picks a live node). A
   click that was acknowledged is never clicked again: the server committed it before Slack's
   answer, so one whose server died before deciding it is applied by the beat's sweep.
2. PostgreSQL away: the nodes reach it through a relay the test cuts (the shared cluster is not
   restarted): decisions answer mask while it is away (and /readyz says not ready) and unmask
   again by themselves after.
3. Redis away (the test's own redis-server, stopped): approvals and decisions still work, grants
   still end on time, requests can still be made, /readyz stays ready; notifications wait and go
   once it is back.

Then: no acknowledged click lost, every approval applied once, every notification sent once (the
fake Slack's record), every
unmask answered is a committed record, no grant honoured past its expiry, and the audit log
verifies. The API's shortest grant is a minute, so each request is shortened to seconds in the
database while it waits for approval (nothing has read its duration yet).
"""

from __future__ import annotations

import itertools
import json
import re
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from django.db.models import F

from audit.models import AuditEvent, Channel, DecisionRecord
from audit.selectors import verify_chain
from audit.services import seal_decisions
from identity.models import Scope, ServiceAccount
from identity.services import token_create
from jitaccess.models import AccessRequest, Approval, DeliveryState, Notification, NotificationChannel
from jitaccess.slack.blocks import APPROVE
from jitaccess.slack.clicks import RETRY_AFTER_S
from jitaccess.slack.models import SlackClick
from jitaccess.states import State
from tests.factories import make_token
from tests.jitaccess.conftest import world  # noqa: F401  (the personas)
from tests.ops.nodes import (
    Node,
    RedisServer,
    Reply,
    TcpRelay,
    celery_beat,
    celery_worker,
    form,
    get,
    gunicorn_server,
    node_env,
    post,
    wait_until,
)
from tests.slack.conftest import SIGNING_SECRET, click, sign
from tests.slack.fake_slack import TOKEN, FakeSlack

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

APPROVALS = "CAPPROVALS"
APPROVERS = {"bob": "UBOB", "carol": "UCAROL"}
SLACK_IDS = {"alice": "UALICE", **APPROVERS}


# --- the nodes -----------------------------------------------------------------------------------


@dataclass
class Cluster:
    servers: list[Node]
    workers: list[Node]
    beat: Node
    relay: TcpRelay
    redis: RedisServer
    fake_slack: FakeSlack
    timeline: dict[str, float] = field(default_factory=dict)  # what happened when (epoch seconds)

    def nodes(self) -> list[Node]:
        return [*self.servers, *self.workers, self.beat]

    def mark(self, moment: str) -> float:
        self.timeline[moment] = time.time()
        return self.timeline[moment]

    def story(self) -> str:
        start = min(self.timeline.values(), default=0.0)
        return ", ".join(f"{moment} +{at - start:.1f}s" for moment, at in self.timeline.items())


@pytest.fixture
def cluster(transactional_db, tmp_path):
    fake_slack = FakeSlack(channels={APPROVALS: {"name": "pii-approvals", "is_member": True}}).start()
    db = settings.DATABASES["default"]
    relay = TcpRelay((db["HOST"], int(db["PORT"] or 5432)))
    relay.start()
    redis = RedisServer()
    redis.start()
    env = node_env(
        database_url=f"postgresql://{db['USER']}@127.0.0.1:{relay.port}/{db['NAME']}",
        redis_url=redis.url,
        var_dir=tmp_path,
        SITE_URL="https://veil.example",
        SLACK_BOT_TOKEN=TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_TEAM_ID="T0ACME",
        SLACK_APP_ID="A0VEIL",
        SLACK_API_URL=fake_slack.url,
        SLACK_APPROVAL_CHANNEL=APPROVALS,
        SLACK_API_TIMEOUT_S="2",
        SLACK_RATE_LIMIT_MAX_WAIT_S="1",
        STATIC_ROOT=str(tmp_path / "static"),
        SWEEP_INTERVAL_S="1",
        AUDIT_SEAL_INTERVAL_S="2",
        AUDIT_CHECKPOINT_INTERVAL_S="5",
    )
    cluster = Cluster(
        servers=[gunicorn_server(name, env, tmp_path) for name in ("web-1", "web-2")],
        workers=[celery_worker(name, env, tmp_path) for name in ("worker-1", "worker-2")],
        beat=celery_beat(env, tmp_path),
        relay=relay,
        redis=redis,
        fake_slack=fake_slack,
    )
    (tmp_path / "static").mkdir()
    try:
        cluster.mark("start")
        for node in cluster.nodes():
            node.start()
        for node in cluster.nodes():
            node.wait_ready()
        cluster.mark("ready")
        yield cluster
    finally:
        for node in cluster.nodes():
            node.kill(signal.SIGTERM)
        print(cluster.story())  # shown when the test fails, with the nodes' logs
        for node in cluster.nodes():
            print(f"=== {node.name}\n{node.log_tail()}")
        redis.stop()
        relay.stop()
        fake_slack.stop()


# --- the people and the agents ---------------------------------------------------------------------


@dataclass
class Agent:
    """An AI agent of alice's: its own principal, its own token to ask for access with."""

    name: str
    token: str


@pytest.fixture
def company(world, cluster):  # noqa: F811
    """Two approvals per request (bob's and carol's), everyone known to Slack by verified email."""
    world.policy.approvals_required = 2
    world.policy.save(update_fields=["approvals_required"])
    for person in (world.alice, world.bob, world.carol):
        person.email_verified = True
        person.save(update_fields=["email_verified"])
        cluster.fake_slack.users[person.email] = SLACK_IDS[person.username]
    return world


def make_agents(owner, count: int, prefix: str) -> list[Agent]:
    agents = []
    for n in range(count):
        account = ServiceAccount.objects.create(name=f"{prefix}-{n}", owner=owner)
        _, token = token_create(
            service_account=account, name="jit", scopes=[Scope.REQUESTS], created_by=None, channel=Channel.CLI
        )
        agents.append(Agent(account.name, token))
    return agents


# --- the clients ------------------------------------------------------------------------------------


def ask_for_access(server: Node, agent: Agent, seconds: int) -> AccessRequest:
    """An agent's request through the API; then shortened to `seconds` while it waits."""
    body = {
        "instance": "prod-pg",
        "database": "shop",
        "schema": "public",
        "table": "customers",
        "columns": ["email"],
        "duration_minutes": 1,
        "reason": "INC-4711 refund mismatch",
    }
    headers = {"Authorization": f"Bearer {agent.token}", "Content-Type": "application/json"}
    reply = post(f"{server.url}/api/v1/requests", json.dumps(body).encode(), headers)
    assert reply.status == 201, (server.name, reply)
    shortened = AccessRequest.objects.filter(pk=reply.body["id"], state=State.PENDING)
    assert shortened.update(duration=timedelta(seconds=seconds)) == 1
    return AccessRequest.objects.get(pk=reply.body["id"])


def ask_for_access_everywhere(cluster: Cluster, agents: list[Agent], seconds: int) -> list[AccessRequest]:
    servers = itertools.cycle(cluster.servers)
    return [ask_for_access(next(servers), agent, seconds) for agent in agents]


@dataclass
class Click:
    """One Slack interaction as sent: a replay posts exactly these bytes again."""

    body: bytes
    headers: dict[str, str]


def approve_click(request_pk: int, slack_user: str) -> Click:
    body = form(json.dumps(click(APPROVE, request_pk, user=slack_user)))
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": str(timestamp),
        "X-Slack-Signature": sign(body.decode(), timestamp),
    }
    return Click(body, headers)


def send(server: Node, sent: Click) -> Reply:
    return post(f"{server.url}/slack/interactions", sent.body, sent.headers)


@dataclass
class Approvers:
    """The approvers as people: a click Slack could not deliver is clicked again, on whichever
    server the load balancer picks next."""

    cluster: Cluster
    clicks: int = 0
    failed_clicks: int = 0
    replays: list[Reply] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def approve(self, request_pk: int, person: str, first_server: int, *, replay: bool = False) -> None:
        servers = self.cluster.servers
        for attempt in range(6):
            server = servers[(first_server + attempt) % len(servers)]
            sent = approve_click(request_pk, APPROVERS[person])
            reply = send(server, sent)
            with self._lock:
                self.clicks += 1
            if reply.status == 200:
                if replay:  # Slack delivering the same click again, to the other node
                    again = send(servers[(first_server + attempt + 1) % len(servers)], sent)
                    with self._lock:
                        self.replays.append(again)
                return
            with self._lock:
                self.failed_clicks += 1
            time.sleep(0.2)  # the person reads Slack's error and clicks again
        raise AssertionError(f"{person} could not get a click on REQ-{request_pk} through")

    def approve_all(self, requests: list[AccessRequest], *, midway: threading.Event | None = None) -> None:
        """Both approvers on every request, four clicks at a time; a request's two approvals go to
        different servers, and every fifth click is delivered twice."""
        jobs = [(r.pk, person) for r in requests for person in APPROVERS]
        with ThreadPoolExecutor(max_workers=4) as pool:
            futures = [
                pool.submit(self.approve, pk, person, i % 2, replay=i % 5 == 0)
                for i, (pk, person) in enumerate(jobs)
            ]
            for done, future in enumerate(futures, start=1):
                future.result()
                if midway is not None and done == len(futures) // 3:
                    midway.set()

    def all_applied(self, requests: list[AccessRequest], *, wait: float = 60) -> None:
        """Every click acknowledged is applied, with no one clicking again: by the server that
        answered, or by the sweep if that server died first."""
        pks = [r.pk for r in requests]

        def applied() -> bool:
            return not AccessRequest.objects.filter(pk__in=pks, state=State.PENDING).exists()

        try:
            wait_until(applied, timeout=wait, what="every acknowledged approval to be applied")
        except AssertionError:
            missing = [
                (r.ref, person)
                for r in AccessRequest.objects.filter(pk__in=pks, state=State.PENDING)
                for person in APPROVERS
                if not Approval.objects.filter(request=r, approver__username=person).exists()
            ]
            raise AssertionError(f"acknowledged clicks lost: {missing}") from None


@dataclass
class Answer:
    server: str
    principal: str
    sent: float
    received: float
    reply: Reply


class DecisionLoad:
    """A data-access layer asking both servers, in turn, about every agent's email column, from
    two threads, paced (this is load to observe, not a benchmark). Answers are kept."""

    def __init__(self, cluster: Cluster, token: str, principals: list[str]) -> None:
        self.cluster, self.token, self.principals = cluster, token, principals
        self.answers: list[Answer] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(2)]

    def __enter__(self) -> DecisionLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _run(self, n: int) -> None:
        for i in itertools.count(n):
            if self._stop.is_set():
                return
            server = self.cluster.servers[i % 2]
            principal = self.principals[(i // 2) % len(self.principals)]
            self.answers.append(ask_decision(server, self.token, principal))
            self._stop.wait(0.05)


def readiness(server: Node) -> Reply:
    return get(f"{server.url}/readyz")


def ask_decision(server: Node, token: str, principal: str) -> Answer:
    body = {
        "principal": {"service_account": principal},
        "query_id": f"q-{time.monotonic_ns()}",
        "columns": [
            {"instance": "prod-pg", "database": "shop", "schema": "public", "table": "customers", "column": c}
            for c in ("id", "email")
        ],
    }
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    sent = time.time()
    reply = post(f"{server.url}/api/v1/decisions", json.dumps(body).encode(), headers)
    return Answer(server.name, principal, sent, time.time(), reply)


def email_action(answer: Answer) -> str:
    assert answer.reply.status == 200, answer
    return answer.reply.body["decisions"][1]["action"]


# --- the scenario -----------------------------------------------------------------------------------


def test_two_servers_two_workers_and_a_beat_survive_kills_and_outages(cluster, company):
    _, proxy_token = make_token([Scope.DECISIONS], "sql-proxy")
    kill_agents = make_agents(company.alice, 8, "agent-k")
    pg_agent = make_agents(company.alice, 1, "agent-p")[0]
    redis_agents = make_agents(company.alice, 3, "agent-r")
    late_agents = make_agents(company.alice, 2, "agent-d")
    everyone = [a.name for a in (*kill_agents, pg_agent, *redis_agents, *late_agents)]
    approvers = Approvers(cluster)
    web1 = cluster.servers[0]
    when = cluster.timeline

    with DecisionLoad(cluster, proxy_token, everyone) as load:
        # 1. Kills: requests and approvals through both servers; one server and one worker die.
        killed = ask_for_access_everywhere(cluster, kill_agents, seconds=8)
        wait_until(lambda: posted(cluster, killed), timeout=60, what="the approval messages")
        midway = threading.Event()
        with ThreadPoolExecutor(max_workers=1) as clicking:
            clicks = clicking.submit(approvers.approve_all, killed, midway=midway)
            assert midway.wait(timeout=60), "the clicks never got a third of the way"
            cluster.mark("kill")
            web1.kill()
            cluster.workers[0].kill()
            web1.start()
            cluster.workers[0].start()
            clicks.result()
        web1.wait_ready()
        cluster.workers[0].wait_ready()
        cluster.mark("web-1 back")
        approvers.all_applied(killed)

        # 2. PostgreSQL away: mask while it is away, unmask again by themselves once it is back.
        (pg_request,) = ask_for_access_everywhere(cluster, [pg_agent], seconds=20)
        wait_until(lambda: posted(cluster, [pg_request]), timeout=60, what="the approval message")
        approvers.approve_all([pg_request])
        approvers.all_applied([pg_request])
        unmasks_everywhere(cluster, proxy_token, pg_agent.name, "before PostgreSQL goes away")
        cluster.relay.stop()
        cluster.mark("pg away")
        while_away = [ask_decision(s, proxy_token, pg_agent.name) for _ in range(5) for s in cluster.servers]
        # A load balancer routing on /readyz takes the nodes out; a client then masks by itself.
        assert {readiness(s).status for s in cluster.servers} == {503}
        cluster.mark("pg back")
        cluster.relay.start()
        assert {email_action(a) for a in while_away} == {"mask"}
        assert all(a.reply.body.get("degraded") for a in while_away), while_away
        unmasks_everywhere(cluster, proxy_token, pg_agent.name, "again after PostgreSQL came back")

        # 3. Redis away: approvals, decisions and expiry work; notifications wait, then go.
        in_outage = ask_for_access_everywhere(cluster, redis_agents, seconds=12)
        wait_until(lambda: posted(cluster, in_outage), timeout=60, what="the approval messages")
        cluster.redis.stop()
        cluster.mark("redis away")
        # Still ready: nothing a request needs is missing, only notifications wait.
        for server in cluster.servers:
            ready = readiness(server)
            assert (ready.status, ready.body["checks"]["broker"]) == (200, "failed"), ready
        approvers.approve_all(in_outage)
        approvers.all_applied(in_outage)
        for agent in redis_agents:
            unmasks_everywhere(cluster, proxy_token, agent.name, "approved while Redis is away")
        late = ask_for_access_everywhere(cluster, late_agents, seconds=5)
        approved = AccessRequest.objects.filter(pk__in=pks(in_outage))
        last_end = max(r.expires_at for r in approved).timestamp()
        wait_until(lambda: time.time() > last_end, timeout=30, what="the grants to pass their expiry")
        after_expiry = [ask_decision(s, proxy_token, a.name) for a in redis_agents for s in cluster.servers]
        assert {email_action(a) for a in after_expiry} == {"mask"}, "a grant honoured past its expiry"
        # No sweep could run (beat publishes through Redis): the state is stale, the decision was not.
        assert set(approved.values_list("state", flat=True)) == {State.APPROVED}
        cluster.mark("redis back")
        cluster.redis.start()
        wait_until(lambda: posted(cluster, late), timeout=60, what="the messages written without Redis")
        cluster.mark("late posted")
        approvers.approve_all(late)
        approvers.all_applied(late)
        cluster.mark("late approved")

        everything = [*killed, pg_request, *in_outage, *late]
        ends = AccessRequest.objects.filter(pk__in=pks(everything)).values_list("expires_at", flat=True)
        last_end = max(ends).timestamp()
        wait_until(lambda: time.time() > last_end, timeout=60, what="the last grant's expiry")
        cluster.mark("last expiry")
    wait_until(
        lambda: (
            set(AccessRequest.objects.filter(pk__in=pks(everything)).values_list("state", flat=True))
            == {State.EXPIRED}
        ),
        timeout=30,
        what="the sweep to expire every grant",
    )
    cluster.mark("all expired")
    wait_until(outbox_empty, timeout=90, what="every notification to be delivered")
    cluster.mark("all delivered")

    # Every approval applied once: two people each, one approval event, one grant, one expiry.
    for request in AccessRequest.objects.filter(pk__in=pks(everything)):
        events = Counter(
            AuditEvent.objects.filter(target_type="request", target_id=str(request.pk)).values_list(
                "action", flat=True
            )
        )
        assert set(request.approvals.values_list("approver__username", flat=True)) == set(APPROVERS)
        assert events["request.approval_recorded"] == 2, (request.ref, events)
        assert events["request.approved"] == 1, (request.ref, events)
        assert events["grant.expired"] == 1, (request.ref, events)
    answered = [r for r in approvers.replays if r.status is not None]
    assert answered and all(r.status == 200 for r in answered), approvers.replays
    assert not SlackClick.objects.filter(processed_at__isnull=True).exists(), "a click left unapplied"

    # Every notification sent once; those written while Redis was away sent only after it was back.
    assert_each_notification_sent_once(cluster.fake_slack, everything)
    waited = Notification.objects.filter(
        channel=NotificationChannel.SLACK, created_at__range=(ts(when["redis away"]), ts(when["redis back"]))
    )
    assert waited.exists()
    assert not waited.filter(sent_at__lt=ts(when["redis back"])).exists(), "sent with no broker"

    # Every unmask answered is a committed record, no grant was honoured past its expiry, and no
    # answer unmasked while PostgreSQL was away.
    assert_answers_recorded_and_in_time(load.answers, killed_server=web1.name, timeline=when)

    # The audit log holds: seal what the beat has not sealed yet, then verify all of it.
    while seal_decisions() is not None:
        pass
    verification = verify_chain()
    assert verification.ok, verification.breaks

    print(
        f"several nodes: {cluster.story()}; {len(load.answers)} decision answers, {approvers.clicks} "
        f"clicks ({approvers.failed_clicks} failed and clicked again; none acknowledged was lost, "
        f"{swept_clicks()} applied by the sweep rather than the server that acknowledged them)"
    )


def unmasks_everywhere(cluster: Cluster, token: str, agent: str, when: str) -> None:
    for server in cluster.servers:
        wait_until(
            lambda s=server: email_action(ask_decision(s, token, agent)) == "unmask",
            timeout=20,
            what=f"{server.name} to unmask {agent}'s email {when}",
        )


# --- what is checked ----------------------------------------------------------------------------------


def pks(requests: list[AccessRequest]) -> list[int]:
    return [r.pk for r in requests]


def posted(cluster: Cluster, requests: list[AccessRequest]) -> bool:
    shown = " ".join(m.shown for m in cluster.fake_slack.in_channel(APPROVALS))
    return all(re.search(rf"\b{r.ref}\b", shown) for r in requests)


def ts(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)


def swept_clicks() -> int:
    """Clicks applied later than their server would have: by the sweep, after it died."""
    late = F("received_at") + timedelta(seconds=RETRY_AFTER_S)
    return SlackClick.objects.filter(processed_at__gte=late).count()


def outbox_empty() -> bool:
    return not Notification.objects.filter(state=DeliveryState.PENDING).exists()


def assert_each_notification_sent_once(fake_slack: FakeSlack, requests: list[AccessRequest]) -> None:
    assert not Notification.objects.filter(state=DeliveryState.FAILED).exists()
    posts = fake_slack.posts()
    for request in requests:
        mentions = [m for m in posts if re.search(rf"\b{request.ref}\b", m.shown)]
        in_channel = [m for m in mentions if m.channel == APPROVALS]
        assert len(in_channel) == 1, (request.ref, [m.text for m in in_channel])
        dms = Counter(m.text.split(" ", 1)[0] for m in mentions if m.channel == "DALICE")
        sent = Notification.objects.filter(
            request=request, channel=NotificationChannel.SLACK, recipient__isnull=False
        ).filter(state=DeliveryState.SENT)
        assert sum(dms.values()) == sent.count(), (request.ref, dms, [n.kind for n in sent])
        assert set(dms.values()) == {1}, (request.ref, dms)  # each kind of notice at most once


def assert_answers_recorded_and_in_time(answers: list[Answer], *, killed_server: str, timeline: dict) -> None:
    records = {r.pk: r for r in DecisionRecord.objects.all()}
    unmasks = 0
    for answer in answers:
        if answer.reply.status is None:  # only the killed server, between its death and return
            assert answer.server == killed_server, answer
            assert timeline["kill"] <= answer.received and answer.sent <= timeline["web-1 back"], answer
            continue
        assert answer.reply.status == 200, answer
        unmasked = [
            d
            for d in answer.reply.body["decisions"]
            if d["action"] == "unmask" and d["reason"]["kind"] in ("grant", "exemption")  # recorded kinds
        ]
        if not unmasked:
            continue
        unmasks += 1
        record = records.get(answer.reply.body.get("record_id"))
        assert record is not None, f"an unmask answered with no record: {answer}"
        assert record.principal_id == answer.principal
        assert [u["request"] for u in record.unmasked] == [d["reason"]["request"] for d in unmasked]
        for decision in unmasked:
            expires_at = datetime.fromisoformat(decision["reason"]["expires_at"]).timestamp()
            assert answer.sent < expires_at, f"unmasked past its grant's expiry: {answer}"
        assert not (timeline["pg away"] < answer.sent and answer.received < timeline["pg back"]), answer
    assert unmasks > 0
