"""The database schema as SQLAlchemy Core tables (migrations in storage/migrations mirror it).
Features declare their own tables (`Feature.tables`): a column `person_id` referring to `people`
lets `portabot maintain` drop an idle visitor's rows with them."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite autoincrements INTEGER only
Timestamp = sa.Float  # Unix seconds: the same on every backend and cheap to compare

people = sa.Table(
    "people",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("state", sa.String(64), nullable=True),
    sa.Column("data", sa.Text, nullable=False, server_default="{}"),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False, server_default="0"),
)

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("platform", sa.String(16), primary_key=True),
    sa.Column("user_id", sa.String(64), primary_key=True),
    sa.Column(
        "person_id", Id, sa.ForeignKey("people.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    sa.Column("chat_id", sa.String(64), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
)

updates = sa.Table(
    "updates",
    metadata,
    sa.Column("platform", sa.String(16), primary_key=True),
    sa.Column("update_id", sa.String(64), primary_key=True),
    sa.Column("received_at", Timestamp, nullable=False, index=True),
)

arrivals = sa.Table(
    "arrivals",
    metadata,
    sa.Column("platform", sa.String(16), primary_key=True),
    sa.Column("update_id", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.String(64), nullable=False),
    sa.Column("sequence", sa.BigInteger, nullable=False),
    sa.Column("arrived_at", Timestamp, nullable=False, index=True),
    sa.Index("ix_arrivals_sender", "platform", "user_id", "sequence"),
)
"""Updates held back to apply in their platform's order (ORDER_WINDOW_MS); the `updates` row
written when one is processed marks it done, and `portabot maintain` clears old rows."""

failed_updates = sa.Table(
    "failed_updates",
    metadata,
    sa.Column("platform", sa.String(16), primary_key=True),
    sa.Column("update_id", sa.String(64), primary_key=True),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("error", sa.String(200), nullable=False),
    sa.Column("first_at", Timestamp, nullable=False),
    sa.Column("last_at", Timestamp, nullable=False, index=True),
)
"""Updates the flow raised an exception on; given up (acknowledged, and recorded in `updates`)
after MAX_FAILURES, so one poisonous message does not hold up the rest."""

inline_replies = sa.Table(
    "inline_replies",
    metadata,
    sa.Column("platform", sa.String(16), primary_key=True),
    sa.Column("update_id", sa.String(64), primary_key=True),
    sa.Column("replies", sa.Text, nullable=False),
    sa.Column("replied_at", Timestamp, nullable=False, index=True),
)
"""Replies that rode in a webhook response (a JSON list of [chat_id, text, key], with the thread_id
after them for a forum topic, and after that what rides with the text as the outbox keeps it),
kept a day: a late re-delivery of their update means the response
never arrived, and it answers with them."""

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("platform", sa.String(16), nullable=False),
    sa.Column("chat_id", sa.String(64), nullable=False),
    sa.Column("thread_id", sa.String(64), nullable=True),  # a forum topic in the chat
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("key", sa.String(128), nullable=False, server_default=""),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("sent_at", Timestamp, nullable=True, index=True),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.String(200), nullable=True),
    # Not to be sent before: a sender's lease, or the next retry after a failure.
    sa.Column("due_at", Timestamp, nullable=True),
    # When the platform refused it for good (say, the bot was blocked): kept, not retried.
    sa.Column("gave_up_at", Timestamp, nullable=True),
    # What rides with the text, as JSON (buttons, formatting, image, edit, a press's answer):
    # NULL for a plain reply, and for rows stored before there was anything else.
    sa.Column("reply", sa.Text, nullable=True),
)

media = sa.Table(
    "media",
    metadata,
    sa.Column("platform", sa.String(16), primary_key=True),
    sa.Column("url_key", sa.String(64), primary_key=True),
    sa.Column("ref", sa.String(255), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
)
"""Images a platform was given once, by the SHA-256 of their URL: the reference to send again
(VK's `photo<owner>_<id>`), so that every later reply with the URL skips the upload."""

inbox = sa.Table(
    "inbox",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("user_id", sa.String(64), nullable=False),  # the web visitor (accounts.user_id)
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("reply", sa.Text, nullable=True),  # what rides with the text, as in the outbox
    sa.Column("key", sa.String(128), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.UniqueConstraint("key", name="uq_inbox_key"),
    sa.Index("ix_inbox_user_id", "user_id", "id"),
)
"""Messages for a web visitor that no request of theirs answered, until the page collects them
(each is shown once: collecting deletes it). `key` makes storing one twice do nothing."""

secrets = sa.Table(
    "secrets",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

limits = sa.Table(
    "limits",
    metadata,
    sa.Column("key", sa.String(80), primary_key=True),
    sa.Column("window_start", Timestamp, nullable=False, index=True),
    sa.Column("count", sa.Integer, nullable=False),
)
"""Hits in the current fixed window per key (`web:<address>`, `web`, a feature's own, …): the
limits that must hold across workers and containers. `portabot maintain` drops old windows."""

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(8), nullable=False),  # timer, reply (sent later) or call
    sa.Column("person_id", sa.BigInteger, nullable=False),
    # The account whose chat the work answers (where the step that asked for it came from).
    sa.Column("platform", sa.String(16), nullable=False),
    sa.Column("user_id", sa.String(64), nullable=False),
    sa.Column("chat_id", sa.String(64), nullable=False),
    sa.Column("thread_id", sa.String(64), nullable=True),
    sa.Column("name", sa.String(64), nullable=False),  # the timer's or the service's name
    sa.Column("key", sa.String(128), nullable=False),
    sa.Column("data", sa.Text, nullable=False),  # JSON: a timer's data, a reply, a call's args
    sa.Column("due_at", Timestamp, nullable=False),
    sa.Column("leased_until", Timestamp, nullable=True),  # a runner holds it until then
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.String(200), nullable=True),
    sa.Column("outcome", sa.Text, nullable=True),  # a call's result (or failure), once it came
    sa.Column("created_at", Timestamp, nullable=False),
    sa.UniqueConstraint("person_id", "key", name="uq_jobs_key"),
    sa.Index("ix_jobs_due_at", "due_at"),
    sqlite_autoincrement=True,  # a job's id is its update's: never used again
)
"""Timers, replies sent later and outside calls, until done (then deleted). A person has one
job per key: a timer asked for again replaces the one of its key."""

pace = sa.Table(
    "pace",
    metadata,
    sa.Column("scope", sa.String(128), primary_key=True),
    sa.Column("next_at", Timestamp, nullable=False, index=True),
    sa.Column("step", sa.Float, nullable=False),  # seconds per send
)
"""The send schedules shared by every sender (storage/pacing.py): per scope (a bot, a chat, a
community), when its next send is due. UNLOGGED on PostgreSQL (the migration says why).
`portabot maintain` drops those idle for a while."""
