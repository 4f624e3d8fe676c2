"""Membership: this node's EPHEMERAL node ``members/<node_id>`` and the cached list of members."""

from __future__ import annotations

import json
import logging
import time

from kazoo.exceptions import NodeExistsError, NoNodeError

from libdcron.abc import Member
from libdcron.errors import ValidationError

from .base import _RETRY_INTERVAL, KAZOO_ERRORS, _ElectionBase, _Retry

log = logging.getLogger(__package__)


class _Membership(_ElectionBase):
    """Publishing our member node and reading everyone's (run by the election thread and ``start``)."""

    def _publish_member(self, wait: float) -> None:
        """Create our member node; raise ValidationError or _Retry when another session holds it."""
        assert self._me is not None
        path = f"{self.members_path}/{self._me.node_id}"
        deadline = time.monotonic() + wait
        while True:
            try:
                self._call(self._client.create_async, path, self._me_json, ephemeral=True)
                return
            except NodeExistsError:
                pass
            try:
                _data, stat = self._call(self._client.get_async, path)
            except NoNodeError:
                continue
            owner = stat.ephemeralOwner
            if owner == self._session:
                self._call(self._client.set_async, path, self._me_json)
                return
            if owner in self._old_sessions:
                log.info("deleting our member node left by an earlier session 0x%x", owner)
                self._delete(path)
                continue
            if time.monotonic() >= deadline:
                message = (
                    f"node id {self._me.node_id!r} is in use by a live node (ZooKeeper session "
                    f"0x{owner:x} holds {path}): give each node its own id"
                )
                if wait > 0:
                    raise ValidationError(message)
                raise _Retry(message)
            time.sleep(0.1)

    def _refresh_members(self) -> None:
        if self._client is None:
            return
        names = self._member_children
        pending = [(name, self._client.get_async(f"{self.members_path}/{name}")) for name in names]
        known = {m.node_id: m for m in self._members}
        found: list[Member] = []
        failed = False
        for name, result in pending:
            try:
                data, _stat = result.get(timeout=self.op_timeout)
                found.append(Member.from_wire(json.loads(data)))
            except NoNodeError:
                continue  # gone meanwhile: the watch reports it
            except KAZOO_ERRORS:
                failed = True
                if name in known:
                    found.append(known[name])
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("ignoring member node %s: not a member's JSON (%s)", name, exc)
        self._members = sorted(found, key=lambda m: m.node_id)
        if failed:
            self._retry_at = time.monotonic() + _RETRY_INTERVAL
