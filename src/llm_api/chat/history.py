"""Which of a request's messages are new, given what the session already holds.

Clients send either the whole conversation (as the seed's web client does) or only the
new user message with a ``session_id``. Both must leave the same stored history, and a
resend of the same request must not store anything twice. The rules, in order:

1. Nothing stored yet: every message is new.
2. A single message equal to the newest stored user message, already answered: a resend
   (a full-history client's first turn, or an only-new client retrying). Sending the same
   lone message twice in a row is therefore read as a retry, not as a second question.
3. The request starts with the stored conversation's first message and has more than one
   message: the whole history. It is walked against the stored one; stored assistant
   replies that ended badly (``interrupted``/``error``) may be missing from the client's
   copy or hold less text. What follows the stored history is new; a request that ends
   where the stored history ends, less its final reply, is a resend; anything else
   contradicts the stored conversation (409).
4. Otherwise: only new messages; all of them are appended.

A resend whose stored reply is ``complete`` is answered from the store; one whose reply
ended badly is generated again in place of that reply.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from llm_api.chat.store import COMPLETE, StoredMessage
from llm_api.errors import Conflict


class TurnKind(StrEnum):
    APPEND = "append"  # store ``new`` and answer
    REPLAY = "replay"  # answered already: send the stored reply again
    REGENERATE = "regenerate"  # answer again, in place of the unfinished ``target``


@dataclass(frozen=True, slots=True)
class Incoming:
    role: str
    content: str


@dataclass(frozen=True, slots=True)
class TurnPlan:
    kind: TurnKind
    new: list[Incoming]
    target: StoredMessage | None = None  # the reply to replay or regenerate


def _same(stored: StoredMessage, incoming: Incoming) -> bool:
    if stored.role != incoming.role:
        return False
    if stored.content == incoming.content:
        return True
    # A reply cut short: the client may hold less (or, after a lost final write, more).
    return (
        stored.role == "assistant"
        and stored.status != COMPLETE
        and (
            stored.content.startswith(incoming.content)
            or incoming.content.startswith(stored.content)
        )
    )


def _resend(stored: Sequence[StoredMessage]) -> TurnPlan:
    reply = stored[-1]
    kind = TurnKind.REPLAY if reply.status == COMPLETE else TurnKind.REGENERATE
    return TurnPlan(kind, [], reply)


def plan_turn(stored: Sequence[StoredMessage], incoming: Sequence[Incoming]) -> TurnPlan:
    """Decide what a request adds to ``stored`` (system messages already removed)."""
    if not stored:
        return TurnPlan(TurnKind.APPEND, list(incoming))
    answered = len(stored) >= 2 and stored[-1].role == "assistant"
    if len(incoming) == 1:
        if answered and _same(stored[-2], incoming[0]):
            return _resend(stored)
        return TurnPlan(TurnKind.APPEND, list(incoming))
    if not _same(stored[0], incoming[0]):
        return TurnPlan(TurnKind.APPEND, list(incoming))

    i = j = 0
    while i < len(stored) and j < len(incoming):
        if _same(stored[i], incoming[j]):
            i += 1
            j += 1
        elif stored[i].role == "assistant" and stored[i].status != COMPLETE:
            i += 1  # the client dropped a reply that failed
        else:
            break
    if i == len(stored):
        return TurnPlan(TurnKind.APPEND, list(incoming[j:]))
    if j == len(incoming) and i == len(stored) - 1 and answered:
        return _resend(stored)
    raise Conflict(
        "the messages sent do not match this session's stored history; send only the new "
        "message, or the history as the session holds it",
        param="messages",
    )
