"""The bottom layer of chat2crm: the types every other package shares, importing none of them.

- :mod:`core.models`: inbound messages, leads and the other nouns of a conversation;
- :mod:`core.plan`: the sync plan the relay hands an adapter, and what the adapter answers;
- :mod:`core.errors`: the error tree (retryable, skippable, fatal, configuration);
- :mod:`core.keys`: the registry of every Redis key family, its TTL and whether it holds patient data;
- :mod:`core.metrics`: the counters every process shares;
- :mod:`core.settings`: the environment a process runs with.

Channels and adapters import only this package; the relay (``connector``) imports them and it; the
emulators import only this package; the demo (``demo``) sits on top of all of them.
"""
