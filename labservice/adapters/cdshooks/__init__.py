"""CDS Hooks 2.0: the `cbc-review` service for the `patient-view` hook (discovery, cards, feedback).

Pure code, no Flask: `request.py` validates the hook call, `prefetch.py` gets the Patient and the
CBC Observations (from prefetch, else from the client's FHIR server via `fhir_client.py`),
`bundle.py` joins them into one Bundle for the FHIR reader (`labservice.services.cds_review`
interprets the most recent CBC), `cards.py` and `suggestions.py` turn the answer into a card,
`feedback.py` validates feedback.
The Flask view is `labservice.api.cds_services`.
"""
