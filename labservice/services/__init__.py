"""Use cases: what an edge (the HTTP API, the dashboard, the command line, the MLLP listener) asks the service
to do, built from the adapters, the engine and the store below. A service imports no edge.

- `hl7v2_receive`: one HL7 v2 message in, the answer and its ACK out (POST /api/v1/hl7v2/interpret and MLLP).
- `batch_upload`: a CSV upload interpreted and kept (POST /api/v1/batches and the dashboard's upload page).
- `batch_results`: a stored batch found, its result file answered (the API's and the dashboard's downloads).

Interpreting and storing CBCs (`labservice.service`) is the use case all of them share.
"""
