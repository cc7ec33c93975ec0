"""Tenant-wide connection, after the tenant's admin granted calsync's application permissions.

The directory comes from ``GET /users/delta`` (User.Read.All), kept incrementally with its delta link and
mapped by Entra object id. Guests (``userType: Guest``), disabled accounts and entries without a mailbox address
are never enrolled. The tenant chooses who is enrolled (everyone; the transitive members of one group, which
Microsoft documents as needing GroupMember.Read.All; or the people in calsync's people directory) and whether
people opt out (the default) or in.

An enrolled person is a ``users`` document with ``token_source: "app"``: the same sync, subscription, renewal,
lifecycle and coalescing code as a per-user connection reads their mailbox, only the token differs
(``service.identity.tokens``). A person covered both ways is one document, one subscription: the app token
wins while the tenant is tenant-wide (it survives password changes), and their own grant is kept, so switching
the tenant back to per-user resumes with it. Each mailbox is probed first (``enrol_mailbox``): in scope →
subscription and first sync (in the same job); ``ErrorAccessDenied`` (out of an Exchange RBAC scope or access policy) →
reported, left alone, checked again only after the admin says the policy changed (and once more an hour later,
Exchange's own delay); ``MailboxNotEnabledForRESTAPI`` → no mailbox; ``ErrorInvalidUser`` → invalid.
"""

from __future__ import annotations

import contextvars
import logging
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage

import requests
from pymongo.database import Database
from redis import Redis
from rq import Retry, get_current_job

from service import outbox, queues
from service.config import Settings
from service.connections.lifecycle import Connections
from service.digest import plan as digest_plan
from service.graph import MAX_BATCH, BatchItem, GraphClient, GraphError, mailbox_unavailable
from service.identity.apptokens import AppConsentMissing, AppTokens
from service.identity.tokens import ReconnectRequired, TokenUnavailable, consent_lost
from service.mail import Mailer
from service.store import people, tenants, users, utcnow
from service.store import tenantwide as store
from service.store import tokens as token_store
from service.store.records import APP_SOURCE, USER_SOURCE, ConnectionStatus, User
from service.sync import mailboxes, runner
from service.sync.requests import request_sync

log = logging.getLogger(__name__)

DIRECTORY_ROLE = "User.Read.All"
GROUP_ROLE = "GroupMember.Read.All"     # /groups/{id}/transitiveMembers: Microsoft's least privilege for it
DELTA_URL = "users/delta?$select=id,displayName,mail,userPrincipalName,accountEnabled,userType"
GROUP_URL = "groups/{group_id}/transitiveMembers/microsoft.graph.user?$select=id&$top=999"
SCOPE_STATES = {"mailbox_access_denied": "out_of_scope", "no_exchange_mailbox": "no_mailbox",
                "mailbox_not_found": "invalid"}
RECHECK = "recheck"      # an enrolment job's kind after a policy change (``recheck``)
POLICY_DELAY = timedelta(minutes=65)    # Exchange may take an hour to apply an RBAC / access-policy change
MAX_DELTA_PAGES = 10_000
ENROL_CHUNK = 500        # directory members enrolled per round trip (read, bulk write, jobs queued)
JOB_MAILBOXES = MAX_BATCH   # mailboxes per enrolment job: their probes are one $batch
MAILBOX_THREADS = 4         # mailboxes of a job enrolled at once (each one's steps in order, as alone)
CHUNK_JOB_TIMEOUT = 900     # a job of 20 mailboxes; each subscription may wait up to 30 s for the tenant's pace
PEOPLE_PER_JOB = 20         # per job of a tenant's disconnection or switch to per-user (each: a paced Graph delete)
# Global Administrator and Privileged Role Administrator (role template ids): the roles Microsoft lets grant
# tenant-wide consent to application permissions of Microsoft Graph.
ADMIN_ROLES = frozenset({"62e90394-69f5-4237-9190-012177145e10", "e8611ab8-c189-46e8-94e1-60213ab1f814"})


class NotAdmin(Exception):  # noqa: N818
    """The signed-in person holds no role that may connect the tenant."""


def is_admin(claims: dict) -> bool:
    """Whether an id token's ``wids`` name a role that may grant application permissions tenant-wide."""
    wids = claims.get("wids")
    return isinstance(wids, list) and any(isinstance(w, str) and w.lower() in ADMIN_ROLES for w in wids)


@dataclass
class TenantWide:
    settings: Settings
    db: Database
    redis: Redis
    http: requests.Session
    app_tokens: AppTokens
    connections: Connections
    mailer: Mailer
    clock: Callable[[], datetime] = field(default=utcnow)

    # ------------------------------------------------------------ the directory

    def _graph(self, tenant_id: str, role: str) -> GraphClient:
        return GraphClient(self.http, self.settings.graph_url,
                           token=lambda force_refresh=False: self.app_tokens.require(tenant_id, role),
                           timeout=self.settings.http_timeout)

    def sync_directory(self, tenant_id: str) -> dict:
        """One users/delta round (from the stored delta link), then enrolment; returns what changed."""
        config = store.settings(self.db, tenant_id)
        if config["mode"] != "tenant_wide":
            return {"skipped": "per_user"}
        try:
            graph = self._graph(tenant_id, DIRECTORY_ROLE)
            url = config.get("delta_link") or DELTA_URL
            seen = 0
            for _ in range(MAX_DELTA_PAGES):
                page = graph.get_json(url)
                seen += store.apply_delta(self.db, tenant_id, page.get("value") or [], self.clock())
                if page.get("@odata.nextLink"):
                    url = page["@odata.nextLink"]
                    continue
                store.save_delta_link(self.db, tenant_id, page.get("@odata.deltaLink"), self.clock())
                break
            group = self._group_members(tenant_id, config)
        except AppConsentMissing as exc:
            consent_lost(self.db, self.redis, tenant_id, exc.reason)
            return {"consent_missing": exc.reason}
        except GraphError as exc:
            if exc.status == 410:   # the delta link expired: start from scratch next time
                store.save_delta_link(self.db, tenant_id, None, self.clock())
            raise
        return {"directory_entries": seen} | self.enrol_tenant(tenant_id, config, group)

    def _group_members(self, tenant_id: str, config: dict) -> set[str] | None:
        if config["enrolment"] != "group" or not config.get("group_id"):
            return None
        graph = self._graph(tenant_id, GROUP_ROLE)
        url: str | None = GROUP_URL.format(group_id=config["group_id"])
        found: set[str] = set()
        while url:
            page = graph.get_json(url)
            found.update(m["id"] for m in page.get("value") or [] if isinstance(m.get("id"), str))
            url = page.get("@odata.nextLink")
        return found

    def eligible(self, entry: dict, config: dict, group: set[str] | None, person: dict | None) -> bool:
        """Who the tenant enrols: enabled members with a mailbox address, by the tenant's enrolment and opt rules
        (``person`` is their users document, if any)."""
        if entry.get("removed") or entry.get("enabled") is False or entry.get("user_type") == "Guest":
            return False
        if not (entry.get("mail") or "").strip():
            return False
        if person and person.get("opted_out_at"):
            return False
        if config["opt"] == "opt_in" and not (person and person.get("opted_in_at")):
            return False
        if config["enrolment"] == "group":
            return group is not None and entry["_id"] in group
        if config["enrolment"] == "directory":
            return people.by_email(self.db, entry["mail"]) is not None
        return True

    def enrol_tenant(self, tenant_id: str, config: dict | None = None, group: set[str] | None = None) -> dict:
        """Enrol who is eligible (queueing each mailbox's probe) and let go of who no longer is.

        In chunks of ``ENROL_CHUNK`` members: one read of their users documents, one bulk write of the
        enrolments and one Redis round trip queueing their jobs, so that a tenant of 20,000 is a few hundred
        round trips instead of 80,000, and the workers start on the first chunk while the next is written."""
        config = config or store.settings(self.db, tenant_id)
        if config["enrolment"] == "group" and group is None:
            group = self._group_members(tenant_id, config)
        done = {"enrolled": 0, "left": 0}
        enrolled_now = set(store.app_user_ids(self.db, tenant_id))
        entries = store.members(self.db, tenant_id)
        for start in range(0, len(entries), ENROL_CHUNK):
            chunk = entries[start:start + ENROL_CHUNK]
            people_docs = store.users_for(self.db, [e["_id"] for e in chunk], store.ENROL_FIELDS)
            joining, leaving = [], []
            for entry in chunk:
                person = people_docs.get(entry["_id"])
                if self.eligible(entry, config, group, person):
                    joining.append((entry, person))
                elif entry["_id"] in enrolled_now:
                    leaving.append(entry["_id"])
            outcomes = store.enrol_many(self.db, tenant_id, joining, self.clock())
            enrolled = [[entry["_id"], what] for (entry, _), what in zip(joining, outcomes, strict=True)
                        if what != "unchanged"]
            if enrolled:
                self.enqueue_enrolments(enrolled)
                done["enrolled"] += len(enrolled)
            for user_id in leaving:
                self.leave(user_id, "no longer enrolled")
                done["left"] += 1
        return done

    def enqueue_enrolments(self, enrolled: list[list[str]]) -> int:
        """Queue the enrolment of mailboxes (``[user id, what]`` pairs), ``JOB_MAILBOXES`` to a job, in one Redis
        round trip: a job's probes are one $batch, and RQ's own cost (about 100 Redis commands a job) is paid
        once for them all. Returns how many jobs."""
        return queues.enqueue_chunks(self.redis, queues.SUBSCRIPTIONS, queues.TENANT_ENROL_MAILBOXES, enrolled,
                                     JOB_MAILBOXES, job_timeout=CHUNK_JOB_TIMEOUT)

    def enrol_mailboxes(self, enrolled: list[list[str]]) -> dict[str, str]:
        """``enrol_mailbox`` for up to ``JOB_MAILBOXES`` mailboxes in one job; each one's outcome by user id.

        One read of their users documents and one app token per tenant; their probes are one ``$batch`` (each
        probe still holds its mailbox's slot and is classified as alone: ``_probed``); then, per mailbox, the
        subscription (one write, paced per tenant as every write is) and the first sync, exactly as
        ``enrol_mailbox`` does them, ``MAILBOX_THREADS`` mailboxes at a time (a job of 20 done one after the other
        left its worker waiting on I/O: P11 ran at 1.5 of the 2 cores). A mailbox whose enrolment fails (a 429 or
        5xx past the client's waits, no token, anything) is queued again alone, with the retries its own job would
        have had (``_retry_alone``): one bad mailbox never fails the others."""
        wanted = [(str(pair[0]), str(pair[1]) if len(pair) > 1 else "new") for pair in enrolled]
        found = users.by_ids(self.db, [user_id for user_id, _ in wanted])
        outcomes: dict[str, str] = {}
        tenants_of: dict[str, list[tuple[str, str, bool]]] = {}
        for user_id, what in wanted:
            user = found.get(user_id)
            if not _enrolling(user, what) or not user.tenant_id:
                outcomes[user_id] = "skipped"
                continue
            self.connections.tokens.forget(user_id)
            cannot_sync = user.connection.status == ConnectionStatus.CANNOT_SYNC
            tenants_of.setdefault(user.tenant_id, []).append((user_id, what, cannot_sync))
        tokens = self.connections.tokens
        for tenant_id, mailboxes_of in tenants_of.items():
            token = tokens.tenant_token(tenant_id)
            probes: dict[str, dict | GraphError] = {}
            try:
                for start in range(0, len(mailboxes_of), MAX_BATCH):
                    part = mailboxes_of[start:start + MAX_BATCH]
                    answers = tokens.graph_with_token("", token).batch(
                        [BatchItem(str(n), "GET", mailboxes.PROBE.format(user_id=user_id), mailbox=user_id)
                         for n, (user_id, _, _) in enumerate(part)])
                    probes.update({user_id: answers[str(n)] for n, (user_id, _, _) in enumerate(part)})
            except (ReconnectRequired, TokenUnavailable):
                outcomes.update({user_id: "no_token" for user_id, _, _ in mailboxes_of})
                continue
            except GraphError as exc:   # the batch itself failed (unreachable, 5xx after retries): each alone
                probes = {user_id: exc for user_id, _, _ in mailboxes_of}
            # Each mailbox's subscription and first sync are I/O waits (Graph, the validation handshake, the
            # database): MAILBOX_THREADS mailboxes at a time, each one's steps in order as alone.
            job = get_current_job()
            owner = job.id if job is not None else uuid.uuid4().hex
            with ThreadPoolExecutor(max_workers=MAILBOX_THREADS, thread_name_prefix="enrol") as pool:
                running = {user_id: pool.submit(contextvars.copy_context().run, self._enrol_probed, user_id, what,
                                                cannot_sync, probes.get(user_id),
                                                tokens.graph_with_token(user_id, token), owner)
                           for user_id, what, cannot_sync in mailboxes_of}
                outcomes.update({user_id: future.result() for user_id, future in running.items()})
        return outcomes

    def _enrol_probed(self, user_id: str, what: str, cannot_sync: bool, probe: dict | GraphError | None,
                      graph: GraphClient, owner: str) -> str:
        """One mailbox of a chunk, its probe answered: classified as ``probe`` does, then subscription and first
        sync as ``enrol_mailbox`` does; a failure queues it again alone."""
        try:
            state = self._probed(user_id, cannot_sync, probe if isinstance(probe, GraphError) else None)
            if state != "in_scope":
                return state
            self.connections.subscriptions.create(user_id, graph)
        except Exception as exc:  # noqa: BLE001 - this mailbox only: queued again alone, with its own retries
            return self._retry_alone(user_id, what, exc)
        self.first_sync(user_id, graph, owner)
        return f"subscribed:{what}"

    def _retry_alone(self, user_id: str, what: str, exc: Exception) -> str:
        """A mailbox whose enrolment failed inside a chunk: its own ``tenant_enrol_mailbox`` job, scheduled as
        RQ would have retried the job of that one mailbox (the first of ``DEFAULT_RETRY``'s intervals, then the
        rest of them)."""
        retry = queues.DEFAULT_RETRY
        first, *rest = retry.intervals or [0]
        wait = max(first, exc.retry_after) if isinstance(getattr(exc, "retry_after", None), int | float) else first
        log.info("enrolment of tenant-wide mailbox %s failed (%s: %s); again alone in %ss", user_id,
                 type(exc).__name__, str(exc)[:200], wait)
        queues.get_queue(queues.SUBSCRIPTIONS, self.redis).enqueue_in(
            timedelta(seconds=wait), queues.TENANT_ENROL_MAILBOX, user_id, what,
            retry=Retry(max=retry.max - 1, interval=rest or [first]) if retry.max > 1 else None,
            job_timeout=300, result_ttl=3600, failure_ttl=7 * 86400)
        return "retrying"

    def enrol_mailbox(self, user_id: str, what: str = "new") -> str:
        """Probe the mailbox with the app token and classify it; in scope → the (one) subscription and a sync.
        A person switched from their own token has their old subscription replaced by one made with the app's."""
        user = users.get(self.db, user_id)
        if not _enrolling(user, what):
            return "skipped"
        # This process's token memos of the user go first (their source may just have changed); the probe
        # then fetches the app token's, which the subscription and the first sync reuse.
        self.connections.tokens.forget(user_id)
        # One client with the app token for the probe, the subscription and the first sync: the job is the
        # tenant-wide enrolment of a mailbox checked tenant-wide above, so its token source is not read again.
        graph = self.connections.tokens.graph(user_id, APP_SOURCE)
        state = self.probe(user_id, user.connection.status == ConnectionStatus.CANNOT_SYNC, graph)
        if state != "in_scope":
            return state
        self.connections.subscriptions.create(user_id, graph)   # replaces (never duplicates) a per-user one
        self.first_sync(user_id, graph)
        return f"subscribed:{what}"

    def first_sync(self, user_id: str, graph: GraphClient | None = None, owner: str | None = None) -> str:
        """The mailbox's first sync, right here, after its subscription exists (what changed before it was made
        is read now; what changes after is notified). Run in the enrolment job rather than queued as a job of its
        own: enrolling a tenant is one job per mailbox instead of two, and the mailbox's user document, token
        and connections are warm. The sync takes the user's sync lock as any sync does (a concurrent one makes
        this one coalesce); if it fails here, it is requested as any other sync is, with that path's retries."""
        if owner is None:
            job = get_current_job()
            owner = job.id if job is not None else uuid.uuid4().hex   # an RQ retry of this job takes its lock back
        try:
            graph_for = self.connections.subscriptions.graph_for if graph is None else lambda _user_id: graph
            report = runner.sync_user(self.db, self.redis, self.settings, graph_for, user_id, owner)
        except Exception as exc:  # noqa: BLE001 - any failure: the sync is requested, with the sync path's retries
            log.info("first sync of tenant-wide mailbox %s failed here (%s); requested", user_id, type(exc).__name__)
            request_sync(self.redis, user_id, "tenant_wide")
            return "requested"
        if report.time_zone:
            digest_plan.reschedule(self.db, user_id, self.settings.digest_default_time)
        return str(report.outcome)

    def probe(self, user_id: str, cannot_sync: bool = True, graph: GraphClient | None = None) -> str:
        """Ask for one calendar with the app token: in_scope, out_of_scope (ErrorAccessDenied), no_mailbox
        (MailboxNotEnabledForRESTAPI) or invalid (ErrorInvalidUser). Anything else raises (RQ retries)."""
        try:
            graph = graph or self.connections.tokens.graph(user_id, APP_SOURCE)
            graph.get_json(mailboxes.PROBE.format(user_id=user_id))
        except GraphError as exc:
            return self._probed(user_id, cannot_sync, exc)
        except (ReconnectRequired, TokenUnavailable):
            return "no_token"
        return self._probed(user_id, cannot_sync, None)

    def _probed(self, user_id: str, cannot_sync: bool, error: GraphError | None) -> str:
        """A probe's answer recorded, alone or in a batch alike: ``error`` None → in scope; a mailbox-wide refusal
        → its class, reported and not retried; any other error is raised."""
        now = self.clock()
        if error is not None:
            reason = mailbox_unavailable(error, mailbox_wide=True)
            if reason is None:
                raise error
            state = SCOPE_STATES[reason]
            store.record_scope(self.db, user_id, state, error.code, now)
            mailboxes.mark(self.db, self.redis, user_id, reason, now)
            log.info("tenant-wide mailbox %s: %s (%s); reported, not retried", user_id, state, error.code)
            return state
        store.record_scope(self.db, user_id, "in_scope", None, now)
        # It could not be read before: now it can (``cannot_sync`` False: its document says it could).
        if cannot_sync and users.mark_available(self.db, user_id, now):
            outbox.connection_status_changed(self.db, self.redis, user_id, ConnectionStatus.CONNECTED,
                                             mailboxes.MAILBOX_AVAILABLE, ConnectionStatus.CANNOT_SYNC, now)
        return "in_scope"

    def policy_changed(self, tenant_id: str) -> int:
        """The admin changed an RBAC scope or access policy: every tenant-wide mailbox is probed again now and once
        more after Exchange's hour, by ``recheck`` jobs (queuing a tenant's mailboxes one by one from the web request
        took longer than a request may). Returns how many mailboxes will be probed."""
        store.update_settings(self.db, tenant_id, {"scope_changed_at": self.clock()})
        queues.enqueue(self.redis, queues.MAINTENANCE, queues.TENANT_RECHECK, tenant_id)
        queues.get_queue(queues.MAINTENANCE, self.redis).enqueue_in(
            POLICY_DELAY, queues.TENANT_RECHECK, tenant_id, retry=queues.DEFAULT_RETRY, job_timeout=300,
            result_ttl=3600, failure_ttl=7 * 86400)
        return store.count_app_users(self.db, tenant_id)

    def recheck(self, tenant_id: str) -> int:
        """Probe every tenant-wide mailbox of the tenant again, in enrolment jobs of ``JOB_MAILBOXES`` (one $batch
        of probes each). Mailboxes that could not be read are probed too: one now in scope is subscribed and synced,
        one still refused stays as it is. Returns how many jobs."""
        return self.enqueue_enrolments([[user_id, RECHECK] for user_id in store.app_user_ids(self.db, tenant_id)])

    def leave(self, user_id: str, reason: str) -> str:
        """Someone the tenant no longer enrols: back to their own grant if they connected themselves, else
        disconnected (their data kept, as for anyone who disconnects)."""
        user = users.get(self.db, user_id)
        if user is None or not user.tenant_wide:
            return "skipped"
        if user.has_user_grant and self._has_cache(user_id):
            self.connections.subscriptions.delete_for_user(user_id)   # with the app token that made it
            store.set_source(self.db, user_id, USER_SOURCE, self.clock())
            self.connections.tokens.forget(user_id)
            if user.connection.status in (ConnectionStatus.NEEDS_ADMIN, ConnectionStatus.DISCONNECTED):
                users.set_connection_status(self.db, user_id, ConnectionStatus.CONNECTED, reason="per_user")
            self.connections.start_syncing(user_id)
            return "per_user"
        self.connections.disconnect(user_id, purge=False, reason=reason)
        return "disconnected"

    def _has_cache(self, user_id: str) -> bool:
        return token_store.get_blob(self.db, user_id) is not None

    # ------------------------------------------------------------ the tenant's mode

    def set_mode(self, tenant_id: str, mode: str) -> dict:
        """Switch the tenant between per-user and tenant-wide; nothing is lost either way: history stays, people
        who connected themselves go back to their own grant, the others keep their data until they connect."""
        before = store.settings(self.db, tenant_id)
        store.update_settings(self.db, tenant_id, {"mode": mode} | ({"disconnecting_since": None}
                                                                  if mode == "tenant_wide" else {}))
        if mode == "tenant_wide":
            if before["mode"] != "tenant_wide":
                store.save_delta_link(self.db, tenant_id, None, self.clock())   # a full directory read
            queues.enqueue(self.redis, queues.MAINTENANCE, queues.TENANT_DIRECTORY_SYNC, tenant_id)
            return {"mode": mode}
        return {"mode": mode, "leaving": self.continue_leaving(tenant_id)}

    def continue_leaving(self, tenant_id: str) -> int:
        """A tenant switched to per-user: each person it still reads with the app token goes back to their own
        grant (a Graph delete and a new subscription) or is disconnected, in jobs, as a disconnection's purge is
        (a tenant's thousands do not fit in the admin's web request). Returns how many are queued."""
        config = store.settings(self.db, tenant_id)
        if config["mode"] == "tenant_wide" or config.get("disconnecting_since"):
            return 0
        return self._queue_people(queues.TENANT_LEAVE_PEOPLE, tenant_id, store.read_with_app_ids(self.db, tenant_id))

    def leave_people(self, tenant_id: str, user_ids: list[str]) -> dict:
        """Some people of a tenant switched to per-user: each one ``leave``s. Stops if the tenant was switched back
        to tenant-wide meanwhile (its directory round enrols them again)."""
        moved: dict[str, int] = {}
        for user_id in user_ids:
            if store.settings(self.db, tenant_id)["mode"] == "tenant_wide":
                return moved | {"stopped": True}
            outcome = self.leave(user_id, "tenant-wide connection turned off")
            moved[outcome] = moved.get(outcome, 0) + 1
        return moved

    def _queue_people(self, func: str, tenant_id: str, user_ids: list[str]) -> int:
        """Queue ``func(tenant_id, some user ids)`` on the maintenance queue, ``PEOPLE_PER_JOB`` people to a job,
        in one Redis round trip; returns how many people."""
        queues.enqueue_chunks(self.redis, queues.MAINTENANCE, func, user_ids, PEOPLE_PER_JOB, tenant_id,
                              job_timeout=CHUNK_JOB_TIMEOUT)
        return len(user_ids)

    def disconnect_tenant(self, tenant_id: str) -> dict:
        """The admin disconnects the whole tenant: enrolment stops now, and every person's subscription is deleted
        at Graph and their data purged in jobs of ``PEOPLE_PER_JOB`` (20,000 Graph deletes do not fit in a web
        request). The tenant stays ``disconnecting`` until its last person is purged; the hourly tenant sweep
        queues whoever is left again, should those jobs be lost."""
        store.update_settings(self.db, tenant_id, {"mode": "per_user", "delta_link": None,
                                                   "disconnecting_since": self.clock()})
        log.info("tenant %s disconnecting", tenant_id)
        return {"purging": self.continue_disconnect(tenant_id)}

    def continue_disconnect(self, tenant_id: str) -> int:
        """Queue the purge of everyone the tenant still has, in jobs of ``PEOPLE_PER_JOB``; returns how many.
        With no one left, the disconnection ends here."""
        if not store.settings(self.db, tenant_id).get("disconnecting_since"):
            return 0
        ids = store.user_ids(self.db, tenant_id)
        if not ids:
            self._disconnected(tenant_id)
            return 0
        return self._queue_people(queues.TENANT_PURGE_PEOPLE, tenant_id, ids)

    def purge_people(self, tenant_id: str, user_ids: list[str]) -> dict:
        """Some of a disconnecting tenant's people: each one's subscription deleted at Graph (with the token that
        made it), then all their data (``Connections.delete_all_data``). Stops if the admin connected the tenant
        again meanwhile. The job that leaves no one ends the disconnection."""
        purged = 0
        for user_id in user_ids:
            if not store.settings(self.db, tenant_id).get("disconnecting_since"):
                log.info("tenant %s connected again: its purge stops", tenant_id)
                return {"purged": purged, "stopped": True}
            user = users.get(self.db, user_id)
            if user is None or user.tenant_id != tenant_id:
                continue   # purged already (a job run twice), or not this tenant's any more
            self.connections.delete_all_data(user_id)
            purged += 1
        if not store.user_ids(self.db, tenant_id):
            self._disconnected(tenant_id)
        return {"purged": purged}

    def _disconnected(self, tenant_id: str) -> None:
        """No one left: the directory goes too, and the tenant is no longer disconnecting."""
        store.forget_directory(self.db, tenant_id)
        store.update_settings(self.db, tenant_id, {"disconnecting_since": None})
        self.app_tokens.forget(tenant_id)
        log.info("tenant %s disconnected: every person purged", tenant_id)

    # ------------------------------------------------------------ opt-out / opt-in

    def opt_out(self, user_id: str) -> dict:
        """A person opts out: the subscription goes (with the token that made it), their data is purged, and a
        record of the opt-out stays so no enrolment brings them back. Per-user connections likewise."""
        user = users.get(self.db, user_id)
        if user is None:
            return {"opted_out": False}
        done = self.connections.delete_all_data(user_id)
        store.record_opt_out(self.db, user_id, user.tenant_id, user.email, self.clock())
        log.info("user %s opted out; data purged%s", user_id, " (finishing in a job)" if done.get("pending") else "")
        return {"opted_out": True} | {k: v for k, v in done.items() if k in ("subscription_deleted", "pending")}

    def opt_in(self, user_id: str) -> dict:
        user = users.get(self.db, user_id)
        if user is None:
            return {"opted_in": False}
        store.record_opt_in(self.db, user_id, self.clock())
        if user.tenant_id and store.settings(self.db, user.tenant_id)["mode"] == "tenant_wide":
            queues.enqueue(self.redis, queues.MAINTENANCE, queues.TENANT_DIRECTORY_SYNC, user.tenant_id)
        return {"opted_in": True}

    # ------------------------------------------------------------ consent lost / restored

    def consent_lost_mail(self, tenant_id: str) -> bool:
        """One mail to the tenant's admin per loss of consent (claimed on the tenant record)."""
        config = store.settings(self.db, tenant_id)
        admin = config.get("admin_email") or (tenants.get(self.db, tenant_id) or {}).get("consented_by")
        if not admin or store.claim_consent_lost_mail(self.db, tenant_id, self.clock()) is None:
            return False
        waiting = len(store.needs_admin_ids(self.db, tenant_id))
        message = EmailMessage()
        message["To"] = admin
        message["Subject"] = "calsync: your organisation's consent was removed"
        link = f"{self.settings.public_url.rstrip('/')}/admin/tenant"
        message.set_content(
            "Hello,\n\ncalsync can no longer read calendars in your organisation: its application permissions\n"
            f"(admin consent) were removed or reduced. {waiting} mailbox(es) wait; nothing is retried until you\n"
            f"grant consent again from {link}.\n\nIf you meant to stop calsync, disconnect the organisation on that "
            "page to delete every subscription and all stored data.\n")
        self.mailer.send(message)
        return True

    def consent_restored(self, tenant_id: str) -> int:
        """The admin consented again: mailboxes that waited for them resume (probe, subscription, sync)."""
        self.app_tokens.forget(tenant_id)
        store.clear_consent_lost(self.db, tenant_id)
        waiting = store.needs_admin_ids(self.db, tenant_id)
        for user_id in waiting:
            users.set_connection_status(self.db, user_id, ConnectionStatus.CONNECTED, reason="consent restored")
        self.enqueue_enrolments([[user_id, "resumed"] for user_id in waiting])
        return len(waiting)


def _enrolling(user: User | None, what: str) -> bool:
    """Whether an enrolment job of this kind probes the mailbox: a connected tenant-wide one; on a ``recheck``
    after a policy change, one that could not be read as well (it may be in scope now)."""
    if user is None or not user.tenant_wide:
        return False
    return user.connected or (what == RECHECK and user.connection.status == ConnectionStatus.CANNOT_SYNC)


def sweep(db: Database, redis: Redis) -> int:
    """Periodic: a users/delta round for every tenant-wide tenant (joiners, leavers, disabled accounts); the purge
    of whoever a disconnecting tenant still has, and the leave of whoever a tenant switched to per-user still
    reads with the app token (their jobs may have been lost with Redis)."""
    tenant_ids = store.tenants_in_mode(db)
    for tenant_id in tenant_ids:
        queues.enqueue(redis, queues.MAINTENANCE, queues.TENANT_DIRECTORY_SYNC, tenant_id, retry=None)
    disconnecting = store.tenants_disconnecting(db)
    for tenant_id in disconnecting:
        queues.enqueue(redis, queues.MAINTENANCE, queues.TENANT_DISCONNECT, tenant_id, retry=None)
    leaving = store.tenants_still_leaving(db)
    for tenant_id in leaving:
        queues.enqueue(redis, queues.MAINTENANCE, queues.TENANT_LEAVE, tenant_id, retry=None)
    return len(tenant_ids) + len(disconnecting) + len(leaving)
