"""The rules backend structures a report by the template's words, grounded and negation-aware."""

from __future__ import annotations

import pytest

from radstream.restructure.lexicon import lexicon_for, term_variants
from radstream.restructure.rules import RulesBackend
from radstream.restructure.structured import FindingResult, FindingStatus
from radstream.restructure.template import load_template
from radstream.restructure.text import Span

CT_REPORT = """CLINICAL HISTORY: Right flank pain. History of kidney stones.
FINDINGS:
Liver: 2.1 cm hypodense lesion in segment 7. No biliary dilatation.
Kidneys: 4 mm kidney stone on the left. No hydronephrosis.
Lung bases: Small right pleural effusion. Possible atelectasis.
IMPRESSION: Left nephrolithiasis without hydronephrosis.
"""


@pytest.fixture(scope="module")
def ct() -> RulesBackend:
    return RulesBackend(load_template("ct-abdomen"))


def _by_path(report: object) -> dict[tuple[str, ...], FindingResult]:
    return {finding.path: finding for finding in report.findings}  # type: ignore[attr-defined]


def test_term_variants_cover_plurals_hyphens_and_inverted_mesh_names() -> None:
    assert {"bone fractures", "fractures", "fracture"} <= term_variants("fractures, bone")
    assert {"ground glass opacity", "ground-glass opacities"} <= term_variants(
        "ground-glass opacity"
    )
    assert "bullae" not in term_variants("bulla")  # no guessing at Latin plurals


def test_a_finding_is_present_absent_or_uncertain_as_its_sentence_says(ct: RulesBackend) -> None:
    found = _by_path(ct.structure(CT_REPORT))
    kidneys = ("kidneys and ureters", "findings")
    assert found[("liver", "findings", "lesion")].status is FindingStatus.PRESENT
    assert found[("biliary system and gallbladder", "findings", "biliary dilatation")].status is (
        FindingStatus.ABSENT
    )
    assert found[(*kidneys, "hydronephrosis")].status is FindingStatus.ABSENT
    assert found[(*kidneys, "nephrolithiasis")].status is FindingStatus.PRESENT
    assert found[("lung bases", "findings", "pleural effusion")].status is FindingStatus.PRESENT
    assert found[("lung bases", "findings", "atelectasis")].status is FindingStatus.UNCERTAIN


def test_the_history_section_states_no_finding_of_this_study(ct: RulesBackend) -> None:
    report = "CLINICAL HISTORY: History of pancreatitis.\nFINDINGS: Normal pancreas."
    assert ("pancreas", "findings", "pancreatitis") not in _by_path(ct.structure(report))


def test_attributes_are_the_options_and_measurements_the_sentence_states(ct: RulesBackend) -> None:
    found = _by_path(ct.structure(CT_REPORT))
    lesion = found[("liver", "findings", "lesion")]
    assert lesion.attributes["size"] == ("2.1 cm",)
    assert lesion.attributes["location"] == ("segment 7",)
    effusion = found[("lung bases", "findings", "pleural effusion")]
    assert effusion.attributes["laterality"] == ("right",)
    assert effusion.attributes["degree"] == ("small",)


def test_every_finding_is_grounded_in_the_sentences_that_state_it(ct: RulesBackend) -> None:
    structured = ct.structure(CT_REPORT)
    for finding in structured.findings:
        assert finding.evidence
        for span in finding.evidence:
            assert any(word in span.of(CT_REPORT).lower() for word in _words(finding))
    stone = _by_path(structured)[("kidneys and ureters", "findings", "nephrolithiasis")]
    assert [span.of(CT_REPORT) for span in stone.evidence] == [
        "Kidneys: 4 mm kidney stone on the left.",
        "Left nephrolithiasis without hydronephrosis.",
    ]


def _words(finding: FindingResult) -> list[str]:
    node = load_template("ct-abdomen").node(finding.path)
    return [term for name in (node.name, *node.synonyms) for term in term_variants(name)]


def test_findings_come_in_template_order(ct: RulesBackend) -> None:
    order = load_template("ct-abdomen").finding_paths()
    paths = [finding.path for finding in ct.structure(CT_REPORT).findings]
    assert paths == sorted(paths, key=order.index)


def test_an_affirmed_mention_outweighs_a_blanket_negative_impression() -> None:
    backend = RulesBackend(load_template("chest-xray-radrestruct"))
    report = "FINDINGS: Mild cardiomegaly.\nIMPRESSION: No acute cardiopulmonary disease."
    found = _by_path(backend.structure(report))
    cardiomegaly = ("cardiovascular system", "diseases", "cardiomegaly")
    assert found[cardiomegaly].status is FindingStatus.PRESENT


def test_a_name_several_areas_share_goes_to_the_area_the_sentence_names() -> None:
    lexicon = lexicon_for(load_template("chest-xray-radrestruct"))
    [lung] = [m for m in lexicon.mentions("Opacity in the right lung base.") if m.term == "Opacity"]
    assert lung.path[:3] == ("respiratory system", "sub_areas", "lung") and lung.candidates > 1
    [bone] = [m for m in lexicon.mentions("Sclerotic opacity in the rib.") if "opacity" in m.term]
    assert bone.path[0] == "skeletal system"


def test_a_finding_without_evidence_cannot_be_built() -> None:
    with pytest.raises(ValueError, match="no evidence"):
        FindingResult(path=("liver",), status=FindingStatus.PRESENT, evidence=())
    assert FindingResult(path=("liver",), status=FindingStatus.ABSENT, evidence=(Span(0, 1),))


def test_a_value_stated_in_other_words_is_read_through_the_template_s_value_synonyms() -> None:
    template = load_template("chest-xray-radrestruct")
    assert "left base" in template.value_synonyms["left lower lobe"]
    backend = RulesBackend(template)
    found = _by_path(backend.structure("FINDINGS: Patchy opacity at the left base."))
    opacity = found[("respiratory system", "sub_areas", "lung", "signs", "opacity")]
    assert "left lower lobe" in opacity.attributes["body_region"]
    assert "patchy" in opacity.attributes["attributes"]
