"""The broker's semantics: Server (the state root) -> VirtualHost -> Exchange / Queue, users,
policies, dead-lettering, definitions. Plain synchronous code with the clock and the scheduler
passed in; nothing here owns an event loop, a socket or a file. Imports only storage/ and
protocol/ below it.
"""
