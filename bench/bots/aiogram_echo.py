"""An aiogram 3 echo bot: aiohttp webhook server (SimpleRequestHandler, which handles each update
in the background), replies through the Bot API at the fake.

    python aiogram_echo.py PORT API_URL TOKEN SECRET
"""

from __future__ import annotations

import sys

from aiogram import Bot, Dispatcher  # type: ignore[import-not-found]
from aiogram.client.session.aiohttp import AiohttpSession  # type: ignore[import-not-found]
from aiogram.client.telegram import TelegramAPIServer  # type: ignore[import-not-found]
from aiogram.types import Message  # type: ignore[import-not-found]
from aiogram.webhook.aiohttp_server import (  # type: ignore[import-not-found]
    SimpleRequestHandler,
    setup_application,
)
from aiohttp import web


async def echo(message: Message) -> None:
    await message.answer(message.text or "")


def main(port: int, api_url: str, token: str, secret: str) -> None:
    session = AiohttpSession(api=TelegramAPIServer.from_base(api_url))
    bot = Bot(token, session=session)
    dispatcher = Dispatcher()
    dispatcher.message.register(echo)
    app = web.Application()
    SimpleRequestHandler(dispatcher, bot, secret_token=secret).register(app, path="/webhook")
    setup_application(app, dispatcher, bot=bot)
    web.run_app(app, host="127.0.0.1", port=port, print=None)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4])
