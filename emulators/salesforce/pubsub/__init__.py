"""Salesforce's Pub/Sub API as gRPC stubs generated from its proto (see ``SOURCES.md`` beside this file),
for the emulated org's Pub/Sub server (:mod:`emulators.salesforce.pubsub_server`).

The same proto as the relay's copy, compiled under the same name: both load in one process.
"""
