"""Leadership: the EPHEMERAL SEQUENTIAL candidates ``election/<token>-n_<sequence>``; the lowest leads."""

from __future__ import annotations

import json
import logging
import re
import time

from kazoo.exceptions import NoNodeError

from libdcron.abc import Member

from .base import _RETRY_INTERVAL, KAZOO_ERRORS, _ElectionBase

log = logging.getLogger(__package__)

_CANDIDATE = re.compile(r"^[0-9a-f]{32}-n_(\d{10})$")


class _Leadership(_ElectionBase):
    """Standing as a candidate and reading who leads (run by the election thread and ``start``)."""

    def _campaign(self) -> None:
        """Make sure exactly one candidate of ours, of the current session, stands."""
        children = self._call(self._client.get_children_async, self.election_path)
        mine: str | None = None
        for name in sorted(c for c in children if c.startswith(self._token)):
            path = f"{self.election_path}/{name}"
            try:
                stat = self._call(self._client.exists_async, path)
            except NoNodeError:
                continue
            if stat is None:
                continue
            if stat.ephemeralOwner == self._session and mine is None:
                mine = name
            else:
                log.info("deleting our stale candidate %s", name)
                self._delete(path)
        if mine is None:
            prefix = f"{self.election_path}/{self._token}-n_"
            created = self._call(
                self._client.create_async, prefix, self._me_json, ephemeral=True, sequence=True
            )
            mine = created.rsplit("/", 1)[-1]
        self._candidate = mine

    def _refresh_leader(self) -> None:
        if self._client is None:
            return
        candidates = sorted(
            (c for c in self._election_children if _CANDIDATE.match(c)), key=lambda c: c.rsplit("_", 1)[-1]
        )
        self._candidate_data = {c: m for c, m in self._candidate_data.items() if c in candidates}
        connected = self._client.connected and not self._need_join
        if connected and self._candidate is not None and self._candidate not in candidates:
            # The list may be older than our candidate: only a node missing for real matters.
            path = f"{self.election_path}/{self._candidate}"
            try:
                gone = self._call(self._client.exists_async, path) is None
            except KAZOO_ERRORS:
                gone = False
                self._retry_at = time.monotonic() + _RETRY_INTERVAL
            if gone:
                log.warning("our candidate node disappeared; campaigning again")
                self._candidate = None
                self._depose()
                self._need_join = True
                self._retry_at = time.monotonic()
        if not candidates:
            self._leader = None
            self._depose()
            return
        head = candidates[0]
        if head == self._candidate:
            self._leader = self._me
            # While suspended, leadership is neither taken nor given up (see _depose_at).
            if connected and not self._leading:
                self._leading = True
                log.info("elected leader", extra={"node": self._me.node_id if self._me else ""})
                self._safe(self._on_elected)
            return
        self._depose()
        if head not in self._candidate_data:
            try:
                data, _stat = self._call(self._client.get_async, f"{self.election_path}/{head}")
                self._candidate_data[head] = Member.from_wire(json.loads(data))
            except NoNodeError:
                self._candidate_data[head] = None  # gone: the watch reports the next one
            except KAZOO_ERRORS:
                self._retry_at = time.monotonic() + _RETRY_INTERVAL
                return
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("leader candidate %s holds no member's JSON (%s)", head, exc)
                self._candidate_data[head] = None
        self._leader = self._candidate_data.get(head)
