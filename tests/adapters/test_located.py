"""Error paths of adapter-built documents point into the client's own input."""

from labservice.adapters.located import relocate

LOCATIONS = [
    {
        "": "Bundle.entry[0].resource(DiagnosticReport/r1)",
        "results.platelets": "Bundle.entry[3].resource(Observation/plt)",
        "results.platelets.unit": "Bundle.entry[3].resource(Observation/plt).valueQuantity.code",
    },
    {"results.hemoglobin": "OBR[2].OBX[3]"},
]


def test_the_most_specific_location_wins():
    assert relocate({"0.results.platelets.unit": ["unknown unit"]}, LOCATIONS) == {
        "Bundle.entry[3].resource(Observation/plt).valueQuantity.code": ["unknown unit"]
    }


def test_what_is_left_of_the_path_follows_a_colon():
    assert relocate({"0.results.platelets.value": ["implausible"], "1.results.hemoglobin.value": ["x"]}, LOCATIONS) == {
        "Bundle.entry[3].resource(Observation/plt): value": ["implausible"],
        "OBR[2].OBX[3]: value": ["x"],
    }


def test_unmapped_fields_fall_back_to_the_document_location_or_stay_as_they_are():
    assert relocate({"0.collected_at": ["bad"], "1.patient.birth_date": ["after"], "body": ["x"]}, LOCATIONS) == {
        "Bundle.entry[0].resource(DiagnosticReport/r1): collected_at": ["bad"],
        "1.patient.birth_date": ["after"],
        "body": ["x"],
    }
