"""PII detection and redaction with Microsoft Presidio, offline.

Presidio's NER-based recognisers (PERSON, LOCATION, ...) need a trained spaCy pipeline, which is
published on GitHub, not on PyPI, so it cannot be installed from the registries here (the PyPI
re-uploads are third-party copies and are not used). We run Presidio's pattern and checksum
recognisers (e-mail, phone, credit card with Luhn, IBAN with its checksum, IP, US SSN, crypto
wallets, URLs, ...) over a *blank* English spaCy pipeline, which only tokenises: nothing is
downloaded, and names without another identifier are not detected (see docs/audit.md).
"""

from __future__ import annotations

import functools
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from synthloom.errors import ConfigError

# Entities the pattern recognisers find with few false alarms (checksums or strict formats). Others
# (URL, US_BANK_NUMBER, UK_NHS, US_DRIVER_LICENSE, ...) can be asked for by name: their bare digit
# patterns also fire on phone numbers and order ids, and URL on the domain of every e-mail address.
DEFAULT_ENTITIES = ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS", "US_SSN", "CRYPTO")
MIN_SCORE = 0.4  # Presidio's phone recogniser scores plausible numbers at 0.4


@dataclass
class Redaction:
    text: str
    entities: list[dict[str, Any]] = field(default_factory=list)  # {type, start, end, score} in the original


def _no_network() -> None:
    """tldextract (Presidio's e-mail check) fetches the public suffix list on first use unless told
    not to; with no URLs it uses the snapshot it ships. Its module-level extractor may already exist
    (imported elsewhere first), so it is replaced as well as configured for new instances."""
    os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")
    import tldextract.tldextract as tld

    tld.TLD_EXTRACTOR = tld.TLDExtract(suffix_list_urls=())


@functools.lru_cache(maxsize=1)
def _engines() -> tuple[Any, Any]:
    _no_network()
    try:
        import spacy
        from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
        from presidio_analyzer.nlp_engine import SpacyNlpEngine
        from presidio_anonymizer import AnonymizerEngine
    except ImportError as e:
        raise ConfigError("PII detection needs the audit extra: pip install 'synthloom[audit]' "
                          "(presidio-analyzer, presidio-anonymizer)") from e

    class BlankSpacyEngine(SpacyNlpEngine):
        """A tokenising-only pipeline: Presidio's context words still work, no model is loaded."""

        def __init__(self) -> None:
            super().__init__(models=[{"lang_code": "en", "model_name": "blank:en"}])

        def load(self) -> None:
            self.nlp = {"en": spacy.blank("en")}

    nlp = BlankSpacyEngine()
    nlp.load()
    registry = RecognizerRegistry(supported_languages=["en"])
    registry.load_predefined_recognizers(languages=["en"], nlp_engine=nlp)
    registry.remove_recognizer("SpacyRecognizer")  # NER over a blank pipeline finds nothing: do not claim PERSON
    analyzer = AnalyzerEngine(nlp_engine=nlp, registry=registry, supported_languages=["en"])
    return analyzer, AnonymizerEngine()


class PiiRedactor:
    """Finds PII entities and replaces each with `<ENTITY_TYPE>`."""

    def __init__(self, entities: Sequence[str] | None = None, min_score: float = MIN_SCORE) -> None:
        self.analyzer, self.anonymizer = _engines()
        supported = set(self.analyzer.get_supported_entities(language="en"))
        chosen = list(entities or DEFAULT_ENTITIES)
        unknown = [e for e in chosen if e not in supported]
        if entities and unknown:
            raise ConfigError(f"unknown PII entity type(s) {', '.join(unknown)}; "
                              f"offline recognisers find: {', '.join(sorted(supported))}")
        self.entities = [e for e in chosen if e in supported]
        self.min_score = min_score

    def redact(self, text: str) -> Redaction:
        if not text:
            return Redaction(text)
        found = self.analyzer.analyze(text, language="en", entities=self.entities, score_threshold=self.min_score)
        if not found:
            return Redaction(text)
        out = self.anonymizer.anonymize(text, found).text
        return Redaction(out, [{"type": r.entity_type, "start": r.start, "end": r.end, "score": round(r.score, 2)}
                               for r in sorted(found, key=lambda r: r.start)])


def count_entities(redactions: Sequence[Redaction]) -> dict[str, int]:
    counts = Counter(e["type"] for r in redactions for e in r.entities)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def pii_summary(texts: Sequence[str], redactor: PiiRedactor | None = None, examples: int = 5) -> dict[str, Any]:
    """Counts by entity type over `texts`, the share of rows with any PII, and a few redacted examples."""
    redactor = redactor or PiiRedactor()
    done = [redactor.redact(t) for t in texts]
    hit = [r for r in done if r.entities]
    return {"rows": len(texts), "rows_with_pii": len(hit), "share_with_pii": round(len(hit) / max(1, len(texts)), 4),
            "by_type": count_entities(done), "examples": [r.text[:200] for r in hit[:examples]],
            "entities_checked": list(redactor.entities)}
