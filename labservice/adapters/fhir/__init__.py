"""FHIR R4 in and out: the reader (Bundle, DiagnosticReport, Observation → our CBC documents) and the answer Bundle."""
