"""Smoke: pika and aio-pika round-trip a message through a real broker."""

import aio_pika
import pika


def test_pika_publish_get(broker):
    conn = pika.BlockingConnection(pika.URLParameters(broker.url))
    ch = conn.channel()
    q = ch.queue_declare("").method.queue
    ch.basic_publish("", q, b"hello", pika.BasicProperties(content_type="text/plain"))
    method, props, body = ch.basic_get(q, auto_ack=True)
    assert body == b"hello"
    assert props.content_type == "text/plain"
    assert method.message_count == 0
    conn.close()


async def test_aio_pika_consume(broker):
    conn = await aio_pika.connect(broker.url)
    async with conn:
        ch = await conn.channel()
        q = await ch.declare_queue("smoke", auto_delete=True)
        await ch.default_exchange.publish(aio_pika.Message(b"x"), routing_key="smoke")
        async with q.iterator() as it:
            async for msg in it:
                async with msg.process():
                    assert msg.body == b"x"
                break
