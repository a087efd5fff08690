"""Emulators of the vendor APIs chat2crm talks to (WhatsApp Graph API, Telegram Bot API, HubSpot,
Salesforce, Pipedrive). They are product code: the tests and the demo use them. Each keeps state
like the real service, answers with the real response and error shapes, can inject faults, and
checks every request it receives against the vendor's own API description."""
