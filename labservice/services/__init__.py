"""Use cases: what an edge (the HTTP API, the dashboard, the command line, the MLLP listener) asks the service
to do, built from the adapters, the engine and the store below. A service imports no edge.

- `interpret`: CBC documents parsed, interpreted and rendered, and those with a patient id kept (every endpoint).
- `store_results`: interpreted CBCs kept with their history: the delta against the previous CBC, the delta
  findings, the result and its interpretation, the referral (`referral_policy` decides when one opens or changes).
- `hl7v2_receive`: one HL7 v2 message in, the answer and its ACK out (POST /api/v1/hl7v2/interpret and MLLP).
- `batch_upload`: a CSV upload interpreted and kept (POST /api/v1/batches and the dashboard's upload page).
- `batch_results`: a stored batch found, its result file answered (the API's and the dashboard's downloads).
- `cds_review`: a CDS Hooks call reviewed: prefetch (or the allowlisted FHIR server), the latest CBC
  interpreted, its card.
"""
