"""The AMQP 0-9-1 side: the asyncio.Protocol (transport), one Session per connection, its
Channels, permissions and publisher confirms. Imports core/, storage/ and protocol/; what it
needs from the node (settings, durability, alarms) comes through small protocols defined here.
"""
