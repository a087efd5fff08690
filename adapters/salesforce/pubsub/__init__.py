"""Salesforce's Pub/Sub API as gRPC stubs generated from its proto (see ``SOURCES.md`` beside this file).

The relay subscribes with them to the Change Data Capture events of the chat2crm package's message object
(:mod:`adapters.salesforce.stream`); the generated modules are committed, so running the relay needs only
``grpcio`` and ``protobuf``.
"""
