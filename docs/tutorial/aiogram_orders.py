# The tutorial's order-taking bot in aiogram 3, for comparison (Telegram only, no linking:
# aiogram has no notion of one person on several platforms).
# Run: BOT_TOKEN=… python aiogram_orders.py
import asyncio
import os
import re

from aiogram import Bot, Dispatcher, F, Router
from aiogram.filters import Command, CommandStart, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import Message

PRICES = {"S": 9, "M": 12, "L": 15}
router = Router()


class Order(StatesGroup):
    size = State()
    quantity = State()
    address = State()
    confirm = State()


@router.message(CommandStart())
@router.message(Command("help"))
async def help_(message: Message) -> None:
    await message.answer("/order – order a pizza\n/orders – your orders\n/cancel – stop the order")


@router.message(Command("cancel"), StateFilter("*"))
async def cancel(message: Message, state: FSMContext) -> None:
    orders = (await state.get_data()).get("orders", [])
    await state.clear()
    await state.update_data(orders=orders)
    await message.answer("Cancelled. Send /order to start again.")


@router.message(Command("orders"), StateFilter("*"))
async def orders(message: Message, state: FSMContext) -> None:
    placed = (await state.get_data()).get("orders", [])
    lines = [f"{o['quantity']} × {o['size']} to {o['address']}" for o in placed]
    await message.answer("\n".join(lines) or "No orders yet.")


@router.message(Command("order"))
async def order(message: Message, state: FSMContext) -> None:
    await state.set_state(Order.size)
    await message.answer("Which size: S, M or L?")


@router.message(Order.size, F.text.regexp(r"(?i)^\s*[sml]\s*$"))
async def size(message: Message, state: FSMContext) -> None:
    await state.update_data(size=message.text.strip().upper())
    await state.set_state(Order.quantity)
    await message.answer("How many? (1 to 10)")


@router.message(Order.size)
async def size_again(message: Message) -> None:
    await message.answer("Please answer S, M or L.")


@router.message(Order.quantity, F.text.regexp(r"^\s*(10|[1-9])\s*$"))
async def quantity(message: Message, state: FSMContext) -> None:
    await state.update_data(quantity=int(message.text))
    await state.set_state(Order.address)
    await message.answer("Where should it go?")


@router.message(Order.quantity)
async def quantity_again(message: Message) -> None:
    await message.answer("A number from 1 to 10, please.")


@router.message(Order.address, F.text.strip().len() >= 5)
async def address(message: Message, state: FSMContext) -> None:
    data = await state.update_data(address=message.text.strip())
    total = PRICES[data["size"]] * data["quantity"]
    await state.set_state(Order.confirm)
    await message.answer(
        f"{data['quantity']} × {data['size']} to {data['address']}: ${total}. "
        "Send yes to order, /cancel to stop."
    )


@router.message(Order.address)
async def address_again(message: Message) -> None:
    await message.answer("That address looks too short.")


@router.message(Order.confirm, F.text.regexp(re.compile(r"^\s*(yes|y)\s*$", re.I)))
async def confirm(message: Message, state: FSMContext) -> None:
    data = await state.get_data()
    placed = data.get("orders", [])
    placed.append({key: data[key] for key in ("size", "quantity", "address")})
    await state.set_state(None)
    await state.set_data({"orders": placed})
    await message.answer("Ordered! /orders lists yours.")


@router.message(Order.confirm)
async def confirm_again(message: Message) -> None:
    await message.answer("Send yes to order, or /cancel.")


@router.message()
async def anything(message: Message) -> None:
    await message.answer("Send /order to order a pizza.")


async def main() -> None:
    dispatcher = Dispatcher()  # MemoryStorage: state is lost on restart (RedisStorage to keep it)
    dispatcher.include_router(router)
    await dispatcher.start_polling(Bot(os.environ["BOT_TOKEN"]))


if __name__ == "__main__":
    asyncio.run(main())
