"""HL7 v2 in: ORU^R01 and ORF^R04 messages read into our JSON CBC documents (python-hl7 parses).

text.py (bytes → CR-separated text), message.py (segments, locations, order groups), codes.py
(LOINC and local codes), values.py (NM/SN, ranges, times, sex), statuses.py (OBX-11), reader.py
(the documents and what was not used), ack.py (the ACK), receive.py (one message end to end, for
the HTTP endpoint and the MLLP listener).
"""
