"""Meta lead forms (Lead Ads) into the CRM: the ``leadgen`` webhook, reading each lead, and writing it as a lead.

- :mod:`connector.leadforms.webhook`: ``/webhooks/meta/leadgen``, verified and de-duplicated on ``leadgen_id``;
- :mod:`connector.leadforms.graph`: the Graph API lead read, throttled within Meta's allowance;
- :mod:`connector.leadforms.model`: ``lead_forms.yaml``, each form's questions (by key) to lead fields;
- :mod:`connector.leadforms.build`: a form submission as a :class:`~core.models.Lead` (pure);
- :mod:`connector.leadforms.intake`: the job's work: the lead stored for the CRM, tied to the patient's
  WhatsApp conversation, the patient greeted when the form allows it.

docs/ads.md describes the set-up on Meta's side and what the CRM shows.
"""
