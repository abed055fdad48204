"""Typed views of feathery's stream entries: the envelope and the common
Discord dispatch events, as TypedDicts (Discord's JSON, keys as Discord
names them; snowflake ids are strings).

decode_entry(stream, entry_id, fields, deliveries) checks an entry's fields
and returns an Entry; decode_event(entry) checks that "d" has the keys its
event needs and returns it typed. Both raise EntryError naming what is wrong.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Dict, List, Mapping, Optional, TypedDict

ENVELOPE_VERSION = "1"


class EntryError(ValueError):
    """An entry, or its event data, is not what feathery writes."""


class Envelope(TypedDict):
    """The fields feathery writes beside "d" in every stream entry."""

    id: str  # stream entry id
    stream: str  # the stream it was read from
    t: str  # event name, e.g. MESSAGE_CREATE
    bot: str  # bot name in feathery's config
    shard: int
    session: str
    seq: int  # (bot, shard, session, seq) identifies an event
    guild: Optional[str]  # guild id, None when the event has none
    before: Any  # cached object before an UPDATE/DELETE event, or None
    at: datetime  # when feathery received the event (UTC)
    deliveries: int  # how many times the group delivered the entry


class Entry(Envelope):
    d: Any  # the dispatch's data: see decode_event


# Discord objects (the keys a consumer most often reads; Discord may send more).


class User(TypedDict, total=False):
    id: str
    username: str
    discriminator: str
    global_name: Optional[str]
    avatar: Optional[str]
    bot: bool


class Member(TypedDict, total=False):
    user: User
    nick: Optional[str]
    roles: List[str]
    joined_at: str
    deaf: bool
    mute: bool
    pending: bool
    guild_id: str


class Role(TypedDict, total=False):
    id: str
    name: str
    color: int
    position: int
    permissions: str
    hoist: bool
    managed: bool
    mentionable: bool


class Emoji(TypedDict, total=False):
    id: Optional[str]
    name: Optional[str]
    animated: bool


class Channel(TypedDict, total=False):
    id: str
    type: int
    guild_id: str
    name: str
    position: int
    parent_id: Optional[str]
    topic: Optional[str]
    nsfw: bool
    owner_id: str


class Attachment(TypedDict, total=False):
    id: str
    filename: str
    size: int
    url: str
    content_type: str


class UnavailableGuild(TypedDict, total=False):
    id: str
    unavailable: bool


class Guild(TypedDict, total=False):
    id: str
    name: str
    icon: Optional[str]
    owner_id: str
    unavailable: bool
    member_count: int
    large: bool
    joined_at: str
    roles: List[Role]
    emojis: List[Emoji]
    channels: List[Channel]
    threads: List[Channel]
    members: List[Member]


# Events: the "d" of each dispatch.


class Ready(TypedDict, total=False):
    v: int
    user: User
    guilds: List[UnavailableGuild]
    session_id: str
    resume_gateway_url: str
    shard: List[int]


class GuildCreate(Guild, total=False):
    pass


class GuildUpdate(Guild, total=False):
    pass


class GuildDelete(UnavailableGuild, total=False):
    pass


class GuildMemberAdd(Member, total=False):
    guild_id: str


class GuildMemberUpdate(Member, total=False):
    guild_id: str


class GuildMemberRemove(TypedDict, total=False):
    guild_id: str
    user: User


class GuildMembersChunk(TypedDict, total=False):
    guild_id: str
    members: List[Member]
    chunk_index: int
    chunk_count: int
    not_found: List[str]
    nonce: str


class GuildRoleCreate(TypedDict, total=False):
    guild_id: str
    role: Role


class GuildRoleUpdate(GuildRoleCreate, total=False):
    pass


class GuildRoleDelete(TypedDict, total=False):
    guild_id: str
    role_id: str


class GuildEmojisUpdate(TypedDict, total=False):
    guild_id: str
    emojis: List[Emoji]


class ChannelCreate(Channel, total=False):
    pass


class ChannelUpdate(Channel, total=False):
    pass


class ChannelDelete(Channel, total=False):
    pass


class ThreadCreate(Channel, total=False):
    newly_created: bool


class ThreadUpdate(Channel, total=False):
    pass


class ThreadDelete(TypedDict, total=False):
    id: str
    guild_id: str
    parent_id: str
    type: int


class ThreadListSync(TypedDict, total=False):
    guild_id: str
    channel_ids: List[str]
    threads: List[Channel]
    members: List[Dict[str, Any]]


class MessageCreate(TypedDict, total=False):
    id: str
    channel_id: str
    guild_id: str
    author: User
    member: Member
    content: str
    timestamp: str
    edited_timestamp: Optional[str]
    tts: bool
    mention_everyone: bool
    mentions: List[User]
    mention_roles: List[str]
    attachments: List[Attachment]
    embeds: List[Dict[str, Any]]
    type: int
    flags: int


class MessageUpdate(MessageCreate, total=False):
    pass


class MessageDelete(TypedDict, total=False):
    id: str
    channel_id: str
    guild_id: str


class MessageReactionAdd(TypedDict, total=False):
    user_id: str
    channel_id: str
    message_id: str
    guild_id: str
    member: Member
    emoji: Emoji


class MessageReactionRemove(TypedDict, total=False):
    user_id: str
    channel_id: str
    message_id: str
    guild_id: str
    emoji: Emoji


class InteractionData(TypedDict, total=False):
    id: str
    name: str
    type: int
    options: List[Dict[str, Any]]
    custom_id: str
    component_type: int


class InteractionCreate(TypedDict, total=False):
    id: str
    application_id: str
    type: int
    data: InteractionData
    guild_id: str
    channel_id: str
    member: Member
    user: User
    token: str
    version: int
    locale: str


class PresenceUpdate(TypedDict, total=False):
    user: User
    guild_id: str
    status: str
    activities: List[Dict[str, Any]]
    client_status: Dict[str, str]


class VoiceStateUpdate(TypedDict, total=False):
    guild_id: str
    channel_id: Optional[str]
    user_id: str
    member: Member
    session_id: str
    deaf: bool
    mute: bool
    self_deaf: bool
    self_mute: bool


class TypingStart(TypedDict, total=False):
    channel_id: str
    guild_id: str
    user_id: str
    timestamp: int
    member: Member


# EVENTS maps each event name to its TypedDict and the keys its "d" must
# have (decode_event checks them; the other keys are optional).
EVENTS: Dict[str, tuple] = {
    "READY": (Ready, ("session_id", "user")),
    "GUILD_CREATE": (GuildCreate, ("id",)),
    "GUILD_UPDATE": (GuildUpdate, ("id",)),
    "GUILD_DELETE": (GuildDelete, ("id",)),
    "GUILD_MEMBER_ADD": (GuildMemberAdd, ("user", "guild_id")),
    "GUILD_MEMBER_UPDATE": (GuildMemberUpdate, ("user", "guild_id")),
    "GUILD_MEMBER_REMOVE": (GuildMemberRemove, ("user", "guild_id")),
    "GUILD_MEMBERS_CHUNK": (GuildMembersChunk, ("guild_id", "members")),
    "GUILD_ROLE_CREATE": (GuildRoleCreate, ("guild_id", "role")),
    "GUILD_ROLE_UPDATE": (GuildRoleUpdate, ("guild_id", "role")),
    "GUILD_ROLE_DELETE": (GuildRoleDelete, ("guild_id", "role_id")),
    "GUILD_EMOJIS_UPDATE": (GuildEmojisUpdate, ("guild_id", "emojis")),
    "CHANNEL_CREATE": (ChannelCreate, ("id", "type")),
    "CHANNEL_UPDATE": (ChannelUpdate, ("id", "type")),
    "CHANNEL_DELETE": (ChannelDelete, ("id", "type")),
    "THREAD_CREATE": (ThreadCreate, ("id", "type")),
    "THREAD_UPDATE": (ThreadUpdate, ("id", "type")),
    "THREAD_DELETE": (ThreadDelete, ("id",)),
    "THREAD_LIST_SYNC": (ThreadListSync, ("guild_id", "threads")),
    "MESSAGE_CREATE": (MessageCreate, ("id",)),
    "MESSAGE_UPDATE": (MessageUpdate, ("id",)),
    "MESSAGE_DELETE": (MessageDelete, ("id", "channel_id")),
    "MESSAGE_REACTION_ADD": (MessageReactionAdd, ("message_id", "user_id", "channel_id")),
    "MESSAGE_REACTION_REMOVE": (MessageReactionRemove, ("message_id", "user_id", "channel_id")),
    "INTERACTION_CREATE": (InteractionCreate, ("id", "type", "token")),
    "PRESENCE_UPDATE": (PresenceUpdate, ("user",)),
    "VOICE_STATE_UPDATE": (VoiceStateUpdate, ("user_id",)),
    "TYPING_START": (TypingStart, ("channel_id", "user_id")),
}

_REQUIRED = ("v", "t", "d", "bot", "shard", "session", "seq", "at")


def decode_entry(stream: str, entry_id: str, fields: Mapping[str, str], deliveries: int = 1) -> Entry:
    """Check an entry's fields (as decoded str -> str) and type its envelope."""
    for k in _REQUIRED:
        if k not in fields:
            raise EntryError(f'entry {entry_id}: field "{k}" is missing')
    if fields["v"] != ENVELOPE_VERSION:
        raise EntryError(f'entry {entry_id}: field "v": unsupported envelope version {fields["v"]!r}')

    def integer(k: str) -> int:
        s = fields[k]
        if not s.isdigit():
            raise EntryError(f'entry {entry_id}: field "{k}": not a non-negative integer: {s[:40]!r}')
        return int(s)

    def parse(k: str) -> Any:
        try:
            return json.loads(fields[k])
        except ValueError as err:
            raise EntryError(f'entry {entry_id}: field "{k}": not JSON: {err}') from None

    guild = fields.get("guild") or None
    if guild == "0":
        guild = None
    if guild is not None and not guild.isdigit():
        raise EntryError(f'entry {entry_id}: field "guild": not a snowflake: {guild[:40]!r}')
    return Entry(
        id=entry_id, stream=stream, t=fields["t"], bot=fields["bot"], shard=integer("shard"),
        session=fields["session"], seq=integer("seq"), guild=guild,
        before=parse("before") if fields.get("before") else None,
        at=datetime.fromtimestamp(integer("at") / 1000, tz=timezone.utc),
        deliveries=deliveries, d=parse("d"),
    )


def decode_event(entry: Entry) -> Any:
    """Return entry["d"] typed as its event's TypedDict, after checking that
    it is an object with the keys the event needs. Events not in EVENTS are
    returned as they are."""
    spec = EVENTS.get(entry["t"])
    d = entry["d"]
    if spec is None:
        return d
    cls, required = spec
    if not isinstance(d, dict):
        raise EntryError(f'entry {entry["id"]}: {entry["t"]}: "d" is not an object')
    missing = [k for k in required if k not in d]
    if missing:
        raise EntryError(f'entry {entry["id"]}: {entry["t"]}: "d" has no {", ".join(missing)}')
    return cls(**d)  # a TypedDict is a dict: this copies d under its type
