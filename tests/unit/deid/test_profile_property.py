"""Property: whatever PHI a header carries in its PHI attributes, none of it survives anywhere."""

from __future__ import annotations

import datetime as dt

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset

from radstream.deid.phi import PhiValue, PhiValues
from radstream.deid.profile import DeidProfile, ProfileOption
from tests.unit.deid.profile_builders import all_strings, deidentify, instance, item, written

# A PHI token mixes letters with a digit from {0, 1, 8, 9}: no UID (digits only), pseudonym
# (base32: A-Z, 2-7) or dummy written by the profile can contain one by accident.
TOKENS = st.from_regex(r"[A-Z][a-z]{2,6}[0189][A-Za-z]{1,4}", fullmatch=True)
# Birth dates end before any shifted study date can begin (offsets are at most ten years).
BIRTH_DATES = st.dates(dt.date(1920, 1, 1), dt.date(1960, 12, 31))
STUDY_DATES = st.dates(dt.date(1985, 1, 1), dt.date(2020, 12, 31))
OPTIONS = st.frozensets(
    st.sampled_from(
        [
            ProfileOption.CLEAN_DESCRIPTORS,
            ProfileOption.CLEAN_STRUCTURED_CONTENT,
            ProfileOption.CLEAN_GRAPHICS,
            ProfileOption.RETAIN_UIDS,
            ProfileOption.RETAIN_SAFE_PRIVATE,
            ProfileOption.RETAIN_LONGITUDINAL_MODIFIED_DATES,
        ]
    )
)


def _da(date: dt.date) -> str:
    return date.strftime("%Y%m%d")


@st.composite
def phi_instances(draw: st.DrawFn) -> tuple[Dataset, list[str]]:
    """A CT instance with random PHI in its PHI attributes (some nested) and the planted values."""
    tokens = draw(st.lists(TOKENS, min_size=14, max_size=14, unique_by=str.lower))
    (family, given_name, mrn, issuer, accession, institution, street, phone, doctor, operator,
     requested, other_id, center, study_id) = tokens  # fmt: skip
    birth, study = draw(BIRTH_DATES), draw(STUDY_DATES)
    name = f"{family}^{given_name}"
    ds = instance(patient_id=mrn, patient_name=name, study_date=_da(study))
    ds.IssuerOfPatientID = issuer
    ds.PatientBirthDate = _da(birth)
    ds.AccessionNumber = accession
    ds.InstitutionName = institution
    ds.InstitutionAddress = f"{street} Road"
    ds.PatientAddress = f"{street} Road"
    ds.PatientTelephoneNumbers = phone
    ds.ReferringPhysicianName = f"{doctor}^A"
    ds.OperatorsName = f"{operator}^B"
    ds.StudyDescription = f"CT for {family} {given_name}"
    ds.StudyID = study_id
    ds.ClinicalTrialCoordinatingCenterName = center
    if draw(st.booleans()):
        ds.OtherPatientIDsSequence = [item(PatientID=other_id, PatientName=name)]
    if draw(st.booleans()):
        ds.RequestAttributesSequence = [
            item(AccessionNumber=accession, RequestedProcedureID=requested)
        ]
    if draw(st.booleans()):
        nested = item(
            CodeValue="P1",
            CodingSchemeDesignator="L",
            PatientName=name,
            PatientID=mrn,
            InstitutionName=institution,
            ReferringPhysicianName=f"{doctor}^A",
            AccessionNumber=accession,
            StudyDate=_da(study),
        )
        if draw(st.booleans()):
            text = item(ValueType="TEXT", TextValue=f"seen by {doctor}, patient {family}")
            nested.ContentSequence = [item(ValueType="CONTAINER", ContentSequence=[text])]
        ds.ProcedureCodeSequence = [nested]
    if draw(st.booleans()):
        ds.add_new(0x00290010, "LO", "ACME PRIVATE")
        ds.add_new(0x00291001, "LO", f"{family} {mrn}")
    if draw(st.booleans()):
        ds.add_new(0x60004000, "LT", f"{family} overlay")
        ds.add_new(0x60003000, "OW", b"\x00\x00")
    planted = [*tokens, _da(birth), _da(study)]
    return ds, planted


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=phi_instances(), options=OPTIONS)
def test_no_phi_value_survives_anywhere_in_the_output(
    case: tuple[Dataset, list[str]], options: frozenset[ProfileOption]
) -> None:
    ds, planted = case
    phi = PhiValues(values=tuple(PhiValue(kind="PatientName", text=text) for text in planted))
    result = deidentify(ds, profile=DeidProfile(options=options), phi=phi)
    output = "\n".join(all_strings(written(result.dataset))).lower()
    survivors = [index for index, value in enumerate(planted) if value.lower() in output]
    assert not survivors, f"planted values #{survivors} survived (options {sorted(options)})"
