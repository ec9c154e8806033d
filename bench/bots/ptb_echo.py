"""A python-telegram-bot 22 echo bot: Application.run_webhook (tornado; updates queued and handled
one at a time, PTB's default), replies through the Bot API at the fake.

    python ptb_echo.py PORT API_URL TOKEN SECRET
"""

from __future__ import annotations

import sys
from typing import Any

from telegram import Update  # type: ignore[import-not-found]
from telegram.ext import (  # type: ignore[import-not-found]
    Application,
    MessageHandler,
    filters,
)


async def echo(update: Update, context: Any) -> None:
    await update.message.reply_text(update.message.text)


def main(port: int, api_url: str, token: str, secret: str) -> None:
    application = Application.builder().token(token).base_url(f"{api_url}/bot").build()
    application.add_handler(MessageHandler(filters.TEXT, echo))
    application.run_webhook(
        listen="127.0.0.1",
        port=port,
        url_path="webhook",
        secret_token=secret,
        webhook_url=f"http://127.0.0.1:{port}/webhook",
    )


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4])
